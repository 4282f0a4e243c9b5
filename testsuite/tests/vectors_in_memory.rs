//! Every transcript in `vectors/` (run over sockets against both binaries by
//! `testsuite::conformance!`) also runs in memory, through `proto::sim::Sim` and
//! `proto::transcript::replay`: once with each write as one read, then with the writes
//! split into random reads, for a few seeds. A failure names the transcript's line and
//! the seed; the same seed gives the same reads, so it reproduces.
//!
//! The session is the one a socket run has: [`testsuite::test_config`] (host `mx.test`,
//! the same domains and limits, STARTTLS offered with the test certificate), a client at
//! `127.0.0.1`. What only a socket run has is handled by the runner: the greeting's date
//! and connection number are matched by prefix (`S: 220 *` in every vector), `T:` is the
//! simulator's handshake and `N:` moves its virtual clock.

use std::path::Path;

use proto::sim::Sim;
use proto::transcript::{Chunks, replay};
use testsuite::transcript::vectors;

/// The seeds each vector's split reads are drawn from.
const SEEDS: [u64; 6] = [1, 2, 3, 4, 5, 6];

/// Vectors that cannot run in memory, with the reason. None today: every one does.
const SOCKET_ONLY: &[(&str, &str)] = &[];

/// A session as [`testsuite::run_vector`] opens one: the server's [`testsuite::test_config`]
/// (its Maildir is never touched here) and a client at the loopback address.
fn session() -> Sim {
    let cfg = testsuite::test_config(Path::new("/nonexistent/in-memory-maildir"));
    let accept = proto::Accept {
        peer: "127.0.0.1:40000".parse().expect("an address"),
        ..Sim::accept()
    };
    Sim::with_accept(cfg, accept)
}

fn run(name: &str, script: &str) {
    if let Some((_, why)) = SOCKET_ONLY.iter().find(|(n, _)| *n == name) {
        eprintln!("{name} runs over sockets only: {why}");
        return;
    }
    replay(&mut session(), script, Chunks::Whole);
    for seed in SEEDS {
        replay(&mut session(), script, Chunks::Random(seed));
    }
}

macro_rules! in_memory {
    ($name:ident) => {
        #[test]
        fn $name() {
            run(stringify!($name), vectors::$name);
        }
    };
}

testsuite::for_each_vector!(in_memory);

/// Every file in `vectors/` is a test here and over sockets (both through
/// `for_each_vector!`).
#[test]
fn every_vector_file_is_listed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("read vectors/")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter_map(|f| f.strip_suffix(".smtp").map(str::to_string))
        .collect();
    files.sort();
    let mut listed: Vec<String> = vectors::ALL.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "vectors/ and transcript::vectors differ");
    let mut tested: Vec<String> = Vec::new();
    macro_rules! tested {
        ($name:ident) => {
            tested.push(stringify!($name).to_string())
        };
    }
    testsuite::for_each_vector!(tested);
    tested.sort();
    assert_eq!(
        tested, listed,
        "for_each_vector! and transcript::vectors differ"
    );
    for (name, _) in SOCKET_ONLY {
        assert!(listed.iter().any(|n| n == name), "{name} is not a vector");
    }
}
