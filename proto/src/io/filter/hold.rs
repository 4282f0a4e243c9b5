//! The text held while the filters look at it, and handed on edited after.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::delivery::DeliveryError;
use crate::header::{self, Edit, MAX_HEADER};
use crate::io::deliver::spool::{Frozen, Spool, SpoolReader};
use crate::io::runtime::Runtime;

/// A message's text, whole, until the filters have answered: in memory up to 64 KiB,
/// then in an unnamed file of `GSMTP_SPOOL_DIR`.
#[derive(Debug)]
pub(crate) struct Hold {
    spool: Spool,
    dir: PathBuf,
}

impl Hold {
    /// An empty hold spooling to `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            spool: Spool::new(Vec::new()),
            dir,
        }
    }

    /// Keeps the next piece.
    pub(crate) async fn write<R: Runtime>(
        &mut self,
        rt: &R,
        bytes: &[u8],
    ) -> Result<(), DeliveryError> {
        if self.spool.hold(bytes) {
            return Ok(());
        }
        Box::pin(self.spool.write_in(rt, &self.dir, bytes)).await
    }

    /// The text, complete.
    pub(crate) fn freeze(self) -> Arc<Frozen> {
        self.spool.freeze()
    }
}

/// The held text with the filters' header edits made, in pieces: the edited header
/// section first, then the body as it was. A header section longer than
/// [`MAX_HEADER`] is handed on unedited.
pub(crate) struct Edited {
    first: Option<Vec<u8>>,
    reader: SpoolReader,
}

impl Edited {
    /// Reads `text`'s header section and makes `edits` in it.
    pub(crate) async fn new<R: Runtime>(
        rt: &R,
        text: &Arc<Frozen>,
        edits: &[Edit],
    ) -> io::Result<Self> {
        let mut reader = text.reader(0..text.len());
        let mut head = Vec::new();
        let mut end = None;
        let mut whole = false;
        while end.is_none() && head.len() <= MAX_HEADER {
            let Some(piece) = reader.next(rt).await? else {
                whole = true;
                break;
            };
            let from = head.len();
            head.extend_from_slice(&piece);
            end = header::header_end(&head, from);
        }
        let first = match end {
            _ if edits.is_empty() => head,
            Some(end) => {
                let (section, rest) = head.split_at(end);
                let blank = if section.ends_with(b"\r\n") { 2 } else { 1 };
                let fields = &section[..section.len() - blank];
                [
                    header::apply(fields, edits),
                    section[section.len() - blank..].to_vec(),
                    rest.to_vec(),
                ]
                .concat()
            }
            // A text that is all header section.
            None if whole => header::apply(&head, edits),
            None => {
                tracing::warn!(
                    octets = head.len(),
                    "header section too long to edit: the filters' edits were not made"
                );
                head
            }
        };
        Ok(Self {
            first: Some(first),
            reader,
        })
    }

    /// The next piece, until the end.
    pub(crate) async fn next<R: Runtime>(&mut self, rt: &R) -> io::Result<Option<Vec<u8>>> {
        match self.first.take() {
            Some(first) => Ok(Some(first)),
            None => self.reader.next(rt).await,
        }
    }
}
