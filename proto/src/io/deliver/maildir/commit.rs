//! The Maildir's committer: one thread per store that makes batches of messages durable
//! (steps 2 to 5 of the module docs): their data synced, their files renamed into `new/`,
//! the directories synced, then each session told.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::folders::make_folder;
use super::{Dir, Job, SYNCFS_BATCH, classify, context};

impl Dir {
    /// The committer: takes every message waiting as one batch, and does steps 2 to 5
    /// of the module docs for all of it.
    pub(super) fn run(&self, jobs: mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            batch.extend(jobs.try_iter().take(4095));
            self.batch.observe(batch.len() as f64);
            let files: Vec<&File> = batch
                .iter()
                .flat_map(|j| j.tmp.iter().map(|(f, _)| f))
                .collect();
            let big = files.len() >= SYNCFS_BATCH;
            let data = if !self.fsync {
                Ok(())
            } else if big {
                self.sync_all()
            } else {
                files.iter().try_for_each(|f| f.sync_data())
            };
            let published: Vec<(Job, io::Result<Vec<PathBuf>>)> = batch
                .into_iter()
                .map(|job| {
                    let new = match &data {
                        Ok(()) => publish(&job.tmp, self.mode),
                        Err(e) => {
                            job.tmp.iter().for_each(|(_, p)| drop(fs::remove_file(p)));
                            Err(io::Error::new(e.kind(), e.to_string()))
                        }
                    };
                    (job, new)
                })
                .collect();
            let dirs: BTreeSet<&Path> = published
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok())
                .flatten()
                .filter_map(|p| p.parent())
                .collect();
            let names = if !self.fsync || dirs.is_empty() {
                Ok(())
            } else if dirs.len() >= SYNCFS_BATCH {
                self.sync_all()
            } else {
                dirs.iter()
                    .try_for_each(|d| File::open(d).and_then(|f| f.sync_all()))
            };
            for (job, new) in &published {
                let outcome = match (new, &names) {
                    (Ok(_), Ok(())) => Ok(()),
                    (Ok(new), Err(e)) => {
                        new.iter().for_each(|p| drop(fs::remove_file(p)));
                        Err(classify(&io::Error::new(
                            e.kind(),
                            format!("cannot sync the Maildir's folders: {e}"),
                        )))
                    }
                    (Err(e), _) => Err(classify(e)),
                };
                let _ = job.done.try_send(outcome);
            }
        }
    }

    /// One sync of the whole file system holding the Maildir.
    fn sync_all(&self) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return nix::unistd::syncfs(&self.root_fd).map_err(io::Error::from);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            nix::unistd::sync();
            Ok(())
        }
    }
}

/// Renames each `tmp/` file into its folder's `new/`; on error undoes the message's
/// renames and removes its files.
fn publish(tmp: &[(File, PathBuf)], mode: u32) -> io::Result<Vec<PathBuf>> {
    let mut new = Vec::with_capacity(tmp.len());
    for (i, (_, t)) in tmp.iter().enumerate() {
        let target = t
            .parent()
            .and_then(Path::parent)
            .zip(t.file_name())
            .map(|(f, n)| f.join("new").join(n));
        let result = match target {
            Some(target) => rename_into_new(t, target, mode),
            None => Err(io::Error::other("a tmp path without a folder")),
        };
        match result {
            Ok(target) => new.push(target),
            Err(e) => {
                new.iter().for_each(|p| drop(fs::remove_file(p)));
                tmp[i..].iter().for_each(|(_, p)| drop(fs::remove_file(p)));
                return Err(e);
            }
        }
    }
    Ok(new)
}

/// Renames `tmp` to `target` in its folder's `new/`, making `new/` again if it was
/// removed since the recipient was checked.
fn rename_into_new(tmp: &Path, target: PathBuf, mode: u32) -> io::Result<PathBuf> {
    match fs::rename(tmp, &target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && tmp.exists() => {
            if let Some(folder) = target.parent().and_then(Path::parent) {
                make_folder(folder, mode)?;
            }
            fs::rename(tmp, &target)
        }
        other => other,
    }
    .map(|()| target)
    .map_err(|e| context(e, "cannot rename", tmp))
}
