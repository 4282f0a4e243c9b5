//! `GSMTP_STORAGE=s3`: each message is one object in an S3-compatible bucket (AWS S3,
//! Garage, MinIO, Ceph), so that any number of instances can write to one replicated
//! store and keep no state of their own.
//!
//! The key is `<GSMTP_S3_PREFIX><YYYY>/<MM>/<DD>/<queue id>.eml` (UTC), which sorts by
//! time, so a consumer lists new mail with ListObjectsV2 and `start-after`. The object is
//! `Return-Path`, our `Received` header and the message, `Content-Type:
//! message/rfc822`, with the envelope in its metadata (`x-amz-meta-mail-from`,
//! `-rcpt-to`, `-client-addr`, `-helo`, `-tls`; octets outside visible ASCII
//! percent-encoded) and a `Content-MD5` the store checks.
//!
//! The message is spooled while it arrives (in memory up to 64 KiB, then in an unnamed
//! file), and its MD5 computed as it comes. Once it is complete: up to [`PART`] octets it
//! goes up as one PUT; past that as a multipart upload of [`PART`]-octet parts, each
//! read from the spool file in pieces, so a 25 MiB message needs well under 1 MiB of
//! memory. `250` only once the PUT, or the upload's Complete, has succeeded; any error
//! or a timeout (`GSMTP_HTTP_TIMEOUT`, per request) is `451 4.3.0`, and a multipart
//! upload that did not complete is aborted, so no part is left behind. A PUT still in
//! flight when it timed out may yet land: at worst a duplicate object when the client
//! retries. A message refused or abandoned before its end never starts an upload.
//!
//! Requests are built and signed by rusty-s3 (SigV4, presigned, the headers above
//! signed too) and sent with the shared hyper client: no hand-written SigV4 or XML.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use futures_lite::FutureExt as _;
use md5::{Digest, Md5};
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, HeadBucket, PutObject,
    UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::client::{Body, Client};
use super::spool::{Frozen, Spool};
use super::{Deliver, Message, Transaction};
use crate::config::{Config, ConfigError, HttpUrl};
use crate::deliver as pure;
use crate::delivery::DeliveryError;
use crate::delivery::Envelope;
use crate::io::runtime::Runtime;
use crate::syntax::{MailParams, ReversePath};
use crate::verdict::Verdict;

/// The reply's text when the store fails or refuses (credentials, a full bucket, a
/// node down).
const STORE_FAILED: &str = "Error: the object store failed, try again later";

/// The size of a multipart upload's parts, and the most a single PUT carries.
pub(crate) const PART: u64 = 8 * 1024 * 1024;
/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(600);
/// The most of an answer read (a multipart upload's XML).
const MAX_ANSWER: usize = 64 * 1024;

/// The S3 destination.
#[derive(Debug)]
pub struct S3<R: Runtime>(Arc<Inner<R>>);

/// What the S3 destination's transactions share.
struct Inner<R: Runtime> {
    rt: R,
    endpoint: HttpUrl,
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    host: String,
    timeout: Duration,
    spool_dir: PathBuf,
    client: Client<R>,
}

impl<R: Runtime> std::fmt::Debug for Inner<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credentials are never shown.
        f.debug_struct("S3")
            .field("endpoint", &self.endpoint.authority())
            .field("bucket", &self.bucket.name())
            .finish_non_exhaustive()
    }
}

/// A transaction of the S3 destination.
#[derive(Debug)]
pub struct S3Transaction<R: Runtime>(Arc<Inner<R>>);

/// A message of the S3 destination: its text, spooled, with its key and checksums.
#[derive(Debug)]
pub struct S3Message<R: Runtime> {
    s3: Arc<Inner<R>>,
    text: Box<Text>,
}

/// A message on its way: its envelope and key, its spool, and the MD5 of each [`PART`]
/// of it so far.
struct Text {
    env: Envelope,
    key: String,
    spool: Spool,
    md5: PartHashes,
    /// Where the verdict's `Authentication-Results` field goes in the spool.
    results_at: usize,
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The MD5s of an object's [`PART`]s, computed as its octets go by.
#[derive(Default)]
struct PartHashes {
    /// The MD5s of the complete parts.
    parts: Vec<[u8; 16]>,
    /// The part being written, and how much of it there is.
    current: Md5,
    current_len: u64,
}

impl PartHashes {
    /// Hashes `bytes` into the parts they fall in.
    fn hash(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = ((PART - self.current_len) as usize).min(bytes.len());
            self.current.update(&bytes[..take]);
            self.current_len += take as u64;
            bytes = &bytes[take..];
            if self.current_len == PART {
                let done = std::mem::take(&mut self.current);
                self.parts.push(done.finalize().into());
                self.current_len = 0;
            }
        }
    }

    /// The MD5s of every part, the last one included.
    fn finish(mut self) -> Vec<[u8; 16]> {
        if self.current_len > 0 || self.parts.is_empty() {
            self.parts.push(self.current.finalize().into());
        }
        self.parts
    }
}

impl<R: Runtime> S3<R> {
    /// Checks the settings and finds the credentials (the keys, else `AWS_ACCESS_KEY_ID`
    /// and `AWS_SECRET_ACCESS_KEY`); errors name the key at fault. The store need not be
    /// up yet.
    pub fn open(rt: R, cfg: &Config) -> Result<Self, ConfigError> {
        let fail = |key: &str, message: String| ConfigError {
            key: key.into(),
            message,
        };
        let s3 = &cfg.s3;
        let endpoint = s3.endpoint.clone().ok_or_else(|| {
            fail(
                "GSMTP_S3_ENDPOINT",
                "GSMTP_STORAGE=s3 needs an endpoint".into(),
            )
        })?;
        let bucket_name = s3
            .bucket
            .clone()
            .ok_or_else(|| fail("GSMTP_S3_BUCKET", "GSMTP_STORAGE=s3 needs a bucket".into()))?;
        let key = s3
            .access_key
            .clone()
            .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok())
            .filter(|k| !k.is_empty());
        let secret = s3
            .secret_key
            .as_ref()
            .map(|s| s.expose().to_string())
            .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok())
            .filter(|s| !s.is_empty());
        let (Some(key), Some(secret)) = (key, secret) else {
            return Err(fail(
                "GSMTP_S3_ACCESS_KEY",
                "GSMTP_STORAGE=s3 needs GSMTP_S3_ACCESS_KEY and GSMTP_S3_SECRET_KEY \
                 (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment)"
                    .into(),
            ));
        };
        let scheme = if endpoint.tls { "https" } else { "http" };
        let url: url::Url = format!("{scheme}://{}/", endpoint.authority())
            .parse()
            .map_err(|e| fail("GSMTP_S3_ENDPOINT", format!("{e}")))?;
        let style = if s3.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(url, style, bucket_name, s3.region.clone())
            .map_err(|e| fail("GSMTP_S3_BUCKET", format!("{e}")))?;
        // With virtual-host style the requests go to `<bucket>.<endpoint>`.
        let origin = match style {
            UrlStyle::Path => endpoint.clone(),
            UrlStyle::VirtualHost => HttpUrl {
                host: format!("{}.{}", bucket.name(), endpoint.host),
                ..endpoint.clone()
            },
        };
        let client = Client::new(
            rt.clone(),
            &origin,
            "GSMTP_S3_ENDPOINT",
            cfg.http.ca.as_deref(),
            cfg.http.connections,
        )?;
        Ok(Self(Arc::new(Inner {
            rt,
            endpoint: origin,
            bucket,
            credentials: Credentials::new(key, secret),
            prefix: s3.prefix.clone(),
            host: cfg.host_name.clone(),
            timeout: cfg.http.timeout,
            spool_dir: super::spool_dir(cfg)?,
            client,
        })))
    }
}

impl<R: Runtime> Inner<R> {
    /// Sends a signed request: `url` from rusty-s3, the signed `headers` with it, and
    /// `body` of `len` octets. Answers other than `2xx` are errors, with their status.
    /// Bounded by the timeout.
    async fn send(
        &self,
        method: hyper::Method,
        url: url::Url,
        headers: &[(String, String)],
        body: Body,
        len: u64,
    ) -> io::Result<super::client::Answer> {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.endpoint.authority())
            .header(hyper::header::CONTENT_LENGTH, len);
        for (name, value) in headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = req.body(body).map_err(io::Error::other)?;
        let method = req.method().clone();
        let timer = async {
            async_io::Timer::after(self.timeout).await;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        };
        let answer = self.client.send(req, MAX_ANSWER).or(timer).await?;
        if (200..300).contains(&answer.status) && !error_document(&answer.body) {
            Ok(answer)
        } else {
            let text = String::from_utf8_lossy(&answer.body);
            let code = text
                .split("<Code>")
                .nth(1)
                .and_then(|t| t.split('<').next())
                .unwrap_or("");
            Err(io::Error::other(format!(
                "{method} answered {} {code}",
                answer.status
            )))
        }
    }

    /// The whole object in one PUT.
    async fn put(
        &self,
        key: &str,
        meta: &[(String, String)],
        spool: &Arc<Frozen>,
        md5: &[u8; 16],
    ) -> io::Result<()> {
        let mut action = PutObject::new(&self.bucket, Some(&self.credentials), key);
        let mut headers = meta.to_vec();
        headers.push(("content-md5".into(), b64(md5)));
        for (k, v) in &headers {
            action.headers_mut().insert(k.clone(), v.clone());
        }
        let url = action.sign(SIGNED_FOR);
        let len = spool.len();
        let body = self.client.stream(spool.reader(0..len));
        self.send(hyper::Method::PUT, url, &headers, body, len)
            .await
            .map(drop)
    }

    /// The object as a multipart upload: create, each part, complete; on any failure
    /// the upload is aborted.
    async fn multipart(
        &self,
        key: &str,
        meta: &[(String, String)],
        spool: &Arc<Frozen>,
        md5s: &[[u8; 16]],
    ) -> io::Result<()> {
        let mut create = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), key);
        for (k, v) in meta {
            create.headers_mut().insert(k.clone(), v.clone());
        }
        let url = create.sign(SIGNED_FOR);
        let answer = self
            .send(hyper::Method::POST, url, meta, Client::<R>::full(""), 0)
            .await?;
        let created = CreateMultipartUpload::parse_response(&answer.body)
            .map_err(|e| io::Error::other(format!("CreateMultipartUpload answer: {e}")))?;
        let upload_id = created.upload_id().to_string();
        let result = self.parts_and_complete(key, &upload_id, spool, md5s).await;
        if result.is_err() {
            let abort =
                AbortMultipartUpload::new(&self.bucket, Some(&self.credentials), key, &upload_id);
            let url = abort.sign(SIGNED_FOR);
            if let Err(e) = self
                .send(hyper::Method::DELETE, url, &[], Client::<R>::full(""), 0)
                .await
            {
                tracing::warn!(key, error = %e, "cannot abort a multipart upload");
            }
        }
        result
    }

    async fn parts_and_complete(
        &self,
        key: &str,
        upload_id: &str,
        spool: &Arc<Frozen>,
        md5s: &[[u8; 16]],
    ) -> io::Result<()> {
        let len = spool.len();
        let mut etags = Vec::with_capacity(md5s.len());
        for (i, md5) in md5s.iter().enumerate() {
            let number = u16::try_from(i + 1).map_err(io::Error::other)?;
            let mut part = UploadPart::new(
                &self.bucket,
                Some(&self.credentials),
                key,
                number,
                upload_id,
            );
            let headers = vec![("content-md5".to_string(), b64(md5))];
            part.headers_mut().insert("content-md5", b64(md5));
            let url = part.sign(SIGNED_FOR);
            let start = i as u64 * PART;
            let end = (start + PART).min(len);
            let body = self.client.stream(spool.reader(start..end));
            let answer = self
                .send(hyper::Method::PUT, url, &headers, body, end - start)
                .await?;
            let etag = answer
                .headers
                .get(hyper::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| io::Error::other("UploadPart answered without an ETag"))?;
            etags.push(etag.to_string());
        }
        let complete = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = complete.sign(SIGNED_FOR);
        let xml = complete.body();
        let len = xml.len() as u64;
        self.send(hyper::Method::POST, url, &[], Client::<R>::full(xml), len)
            .await
            .map(drop)
    }
}

/// Whether an answer is an S3 error document (CompleteMultipartUpload may fail with
/// `200 OK` and an `<Error>` body).
fn error_document(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"<Error>").is_some()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl<R: Runtime> Deliver for S3<R> {
    type Transaction = S3Transaction<R>;

    fn name(&self) -> &'static str {
        "s3"
    }

    /// The bucket answers a `HeadBucket` signed with these credentials.
    async fn probe(&self) -> Result<(), DeliveryError> {
        let s3 = &self.0;
        let url = HeadBucket::new(&s3.bucket, Some(&s3.credentials)).sign(SIGNED_FOR);
        s3.send(hyper::Method::HEAD, url, &[], Client::<R>::full(""), 0)
            .await
            .map(drop)
            .map_err(|e| {
                DeliveryError::transient()
                    .with_text(STORE_FAILED)
                    .because(format_args!(
                        "{} bucket {}: {e}",
                        s3.endpoint,
                        s3.bucket.name()
                    ))
            })
    }

    async fn start(
        &self,
        _: &ReversePath<'static>,
        _: &MailParams,
    ) -> Result<S3Transaction<R>, DeliveryError> {
        Ok(S3Transaction(Arc::clone(&self.0)))
    }
}

impl<R: Runtime> Transaction for S3Transaction<R> {
    type Message = S3Message<R>;

    async fn begin(self, env: &Envelope) -> Result<S3Message<R>, DeliveryError> {
        let s3 = self.0;
        let now = SystemTime::now();
        let (prefix, results_at) = pure::prefix(env, &s3.host, now, true);
        let key = pure::s3::key(&s3.prefix, now, env.id);
        let mut md5 = PartHashes::default();
        md5.hash(&prefix);
        let text = Box::new(Text {
            env: env.clone(),
            key,
            spool: Spool::new(prefix),
            md5,
            results_at,
        });
        Ok(S3Message { s3, text })
    }
}

impl<R: Runtime> Message for S3Message<R> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        self.text.md5.hash(bytes);
        let s3 = &self.s3;
        self.text.spool.write_in(&s3.rt, &s3.spool_dir, bytes).await
    }

    /// With a verdict, its `Authentication-Results` field goes in first, and the parts'
    /// MD5s are computed again, reading the spool once.
    async fn commit(self, verdict: &Verdict) -> Result<(), DeliveryError> {
        let s3 = self.s3;
        let Text {
            env,
            key,
            mut spool,
            md5,
            results_at,
        } = *self.text;
        let store_failed = |e: &dyn std::fmt::Display| {
            DeliveryError::transient()
                .with_text(STORE_FAILED)
                .because(format_args!("{} key {key}: {e}", s3.endpoint))
        };
        let results = verdict.header_fields(&s3.host);
        let (spool, md5s) = if results.is_empty() {
            (spool.freeze(), md5.finish())
        } else {
            spool
                .insert_in(&s3.rt, &s3.spool_dir, results_at, &results)
                .await?;
            let spool = spool.freeze();
            let mut md5 = PartHashes::default();
            let mut reader = spool.reader(0..spool.len());
            while let Some(piece) = reader.next(&s3.rt).await.map_err(|e| store_failed(&e))? {
                md5.hash(&piece);
            }
            (spool, md5.finish())
        };
        let meta = pure::s3::metadata(&env, verdict);
        let result = if md5s.len() == 1 {
            s3.put(&key, &meta, &spool, &md5s[0]).await
        } else {
            s3.multipart(&key, &meta, &spool, &md5s).await
        };
        result.map_err(|e| store_failed(&e))
    }
}
