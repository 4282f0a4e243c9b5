//! A private Garage cluster (the Rust, geo-distributed S3 store) on loopback: three nodes,
//! replication factor 3, started, killed and stopped by the tests; and a way to read the
//! bucket back (requests signed by rusty-s3, sent by curl).

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rusty_s3::actions::{GetObject, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::daemon::{Proc, free_addr, run, wait_until};
use crate::TempDir;

/// The secret the nodes share (64 hex digits).
const RPC_SECRET: &str = "5c1f5e8dd2b4a4c5d0e1ce2f6a4e3b1d9f8e7c6b5a493827160f1e2d3c4b5a69";
/// The bucket the tests write to.
pub const BUCKET: &str = "mail";
/// The region the nodes answer for.
pub const REGION: &str = "us-east-1";

/// One node.
#[derive(Debug)]
struct Node {
    proc: Option<Proc>,
    config: PathBuf,
    log: PathBuf,
    s3: SocketAddr,
}

/// A running cluster, with a key and a bucket it may use.
#[derive(Debug)]
pub struct Garage {
    nodes: Vec<Node>,
    /// Each node's `id@address`.
    ids: Vec<String>,
    /// The access key id.
    pub key_id: String,
    /// The secret key.
    pub secret: String,
}

/// Whether the `garage` binary is installed (`.ci/run` builds it when it is missing).
pub fn garage_installed() -> bool {
    Command::new("garage")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Garage {
    /// Starts `n` nodes under `dir` with replication factor `n`, joins them, applies a
    /// layout, and makes a key and the bucket [`BUCKET`] it may read and write.
    pub fn start(dir: &TempDir, n: usize) -> Self {
        assert!(
            garage_installed(),
            "garage is not installed: cargo install garage --locked --no-default-features \
             --features lmdb,bundled-libs"
        );
        let mut nodes = Vec::new();
        for i in 0..n {
            let root = dir.path().join(format!("garage{i}"));
            fs::create_dir_all(&root).expect("make a node folder");
            let (s3, rpc, admin) = (free_addr(), free_addr(), free_addr());
            let config = root.join("garage.toml");
            fs::write(
                &config,
                format!(
                    "metadata_dir = \"{root}/meta\"\ndata_dir = \"{root}/data\"\n\
                     db_engine = \"lmdb\"\nreplication_factor = {n}\n\
                     rpc_bind_addr = \"{rpc}\"\nrpc_public_addr = \"{rpc}\"\n\
                     rpc_secret = \"{RPC_SECRET}\"\n\n[s3_api]\ns3_region = \"{REGION}\"\n\
                     api_bind_addr = \"{s3}\"\n\n[admin]\napi_bind_addr = \"{admin}\"\n",
                    root = root.display()
                ),
            )
            .expect("write garage.toml");
            nodes.push(Node {
                proc: None,
                config,
                log: root.join("garage.log"),
                s3,
            });
        }
        let mut g = Self {
            nodes,
            ids: Vec::new(),
            key_id: String::new(),
            secret: String::new(),
        };
        for i in 0..n {
            g.restart(i);
        }
        g.ids = (0..n)
            .map(|i| g.cli(i, &["node", "id", "-q"]).trim().to_string())
            .collect();
        g.connect_all();
        for id in &g.ids {
            let short = id.split('@').next().expect("an id");
            g.cli(0, &["layout", "assign", short, "-z", "dc1", "-c", "1G"]);
        }
        g.cli(0, &["layout", "apply", "--version", "1"]);
        assert!(g.wait_healthy(), "the cluster did not become healthy");
        let key = g.json(0, "CreateKey", r#"{"name": "guerrilla"}"#);
        g.key_id = key["accessKeyId"].as_str().expect("a key id").to_string();
        g.secret = key["secretAccessKey"]
            .as_str()
            .expect("a secret")
            .to_string();
        let bucket = g.json(
            0,
            "CreateBucket",
            &format!(r#"{{"globalAlias": "{BUCKET}"}}"#),
        );
        let bucket_id = bucket["id"].as_str().expect("a bucket id");
        g.json(
            0,
            "AllowBucketKey",
            &format!(
                r#"{{"bucketId": "{bucket_id}", "accessKeyId": "{}", "permissions": {{"read": true, "write": true, "owner": true}}}}"#,
                g.key_id
            ),
        );
        g
    }

    /// Node `i`'s S3 endpoint.
    pub fn s3(&self, i: usize) -> SocketAddr {
        self.nodes[i].s3
    }

    /// The process ids of the nodes that are running.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.proc.as_ref().map(Proc::pid))
            .collect()
    }

    /// Starts node `i` (again).
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new("garage");
        cmd.arg("-c").arg(&node.config).arg("server");
        let mut p = Proc::spawn(&format!("garage node {i}"), &mut cmd, &node.log);
        p.wait_listening(node.s3);
        node.proc = Some(p);
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.signal(nix::sys::signal::Signal::SIGKILL);
            p.wait_exit(Duration::from_secs(10));
        }
    }

    /// Stops every node.
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(mut p) = self.nodes[i].proc.take() {
                p.stop();
            }
        }
    }

    /// Starts every stopped node, and waits for the cluster to be healthy.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].proc.is_none() {
                self.restart(i);
            }
        }
        self.connect_all();
        assert!(
            self.wait_healthy(),
            "the cluster did not become healthy again"
        );
    }

    /// Joins every pair of nodes: gossip and the nodes' saved peer lists would too, but
    /// only after a while.
    fn connect_all(&self) {
        for i in 0..self.ids.len() {
            for id in &self.ids[i + 1..] {
                self.cli(i, &["node", "connect", id]);
            }
        }
    }

    /// Waits (up to a minute) until every node sees every other one and calls the cluster
    /// healthy: a node that has not yet met a peer answers 503 for want of a quorum.
    fn wait_healthy(&self) -> bool {
        let n = self.nodes.len();
        wait_until(Duration::from_secs(60), || {
            (0..n).all(|i| {
                self.try_json(i, "GetClusterHealth", "").is_some_and(|h| {
                    h["status"] == "healthy" && h["connectedNodes"].as_u64() == Some(n as u64)
                })
            })
        })
    }

    /// Runs the `garage` CLI against node `i`; panics unless it succeeds. Returns its
    /// output.
    fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = run(
            Command::new("garage")
                .arg("-c")
                .arg(&self.nodes[i].config)
                .args(args),
            b"",
            Duration::from_secs(30),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "garage {args:?}: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// [`Garage::json`], `None` on failure; an empty `body` is left out (calls such as
    /// `GetClusterHealth` take none).
    fn try_json(&self, i: usize, call: &str, body: &str) -> Option<serde_json::Value> {
        let mut cmd = Command::new("garage");
        cmd.arg("-c")
            .arg(&self.nodes[i].config)
            .args(["json-api", call]);
        if !body.is_empty() {
            cmd.arg(body);
        }
        let out = run(&mut cmd, b"", Duration::from_secs(30));
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Calls the administration API through node `i`'s CLI (`garage json-api`).
    pub fn json(&self, i: usize, call: &str, body: &str) -> serde_json::Value {
        self.try_json(i, call, body)
            .unwrap_or_else(|| panic!("garage json-api {call} {body} failed"))
    }

    /// Multipart uploads begun and neither completed nor aborted, in [`BUCKET`].
    pub fn unfinished_uploads(&self, via: usize) -> u64 {
        let info = self.json(
            via,
            "GetBucketInfo",
            &format!(r#"{{"globalAlias": "{BUCKET}"}}"#),
        );
        info["unfinishedMultipartUploads"]
            .as_u64()
            .expect("unfinishedMultipartUploads")
    }

    fn bucket(&self, via: usize) -> (Bucket, Credentials) {
        let url = format!("http://{}/", self.nodes[via].s3)
            .parse()
            .expect("a URL");
        (
            Bucket::new(url, UrlStyle::Path, BUCKET, REGION).expect("a bucket"),
            Credentials::new(self.key_id.clone(), self.secret.clone()),
        )
    }

    /// Every key under `prefix`, through node `via`.
    pub fn list(&self, via: usize, prefix: &str) -> Vec<String> {
        let (bucket, creds) = self.bucket(via);
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut list = ListObjectsV2::new(&bucket, Some(&creds));
            list.with_prefix(prefix);
            if let Some(a) = &after {
                list.with_start_after(a.clone());
            }
            let url = list.sign(Duration::from_secs(600));
            let (_, body) = curl(url.as_str());
            let parsed = ListObjectsV2::parse_response(&body).expect("a ListObjectsV2 answer");
            // rusty-s3 asks for `encoding-type=url`: keys come back percent-encoded.
            let page: Vec<String> = parsed
                .contents
                .into_iter()
                .map(|o| percent_decoded(&o.key))
                .collect();
            let done = page.is_empty() || parsed.next_continuation_token.is_none();
            after = page.last().cloned();
            keys.extend(page);
            if done {
                break;
            }
        }
        keys
    }

    /// An object's headers (lower-cased names) and body, through node `via`; `None` if it
    /// is not there.
    pub fn get(&self, via: usize, key: &str) -> Option<(String, Vec<u8>)> {
        let (bucket, creds) = self.bucket(via);
        let url = GetObject::new(&bucket, Some(&creds), key).sign(Duration::from_secs(600));
        let (head, body) = curl(url.as_str());
        head.starts_with("HTTP/1.1 200")
            .then(|| (head.to_lowercase(), body))
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// `%XX` escapes decoded (the keys here are ASCII).
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if b[i] == b'%' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// GETs `url` with curl: the response head and body.
fn curl(url: &str) -> (String, Vec<u8>) {
    let out = run(
        Command::new("curl").args(["-sS", "-D", "-", url]),
        b"",
        Duration::from_secs(60),
    );
    let all = out.stdout;
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(all.len(), |p| p + 4);
    (
        String::from_utf8_lossy(&all[..split]).into_owned(),
        all[split..].to_vec(),
    )
}
