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
/// section first, then the body as it was (or the body a milter put in its place). A
/// header section longer than [`MAX_HEADER`] is handed on unedited.
pub(crate) struct Edited {
    first: Option<Vec<u8>>,
    reader: Option<SpoolReader>,
}

/// The start of a held text: its header section and what came after it in the same
/// pieces, read until the blank line (or [`MAX_HEADER`] octets), and the reader, for
/// the rest.
pub(crate) struct Head {
    /// What was read.
    pub(crate) bytes: Vec<u8>,
    /// Where the header section ends in it (after the blank line), if it was found.
    pub(crate) end: Option<usize>,
    /// Whether the text ended within what was read.
    pub(crate) whole: bool,
    /// The rest of the text.
    pub(crate) reader: SpoolReader,
}

impl Head {
    /// Reads the start of `text`.
    pub(crate) async fn read<R: Runtime>(rt: &R, text: &Arc<Frozen>) -> io::Result<Self> {
        let mut reader = text.reader(0..text.len());
        let mut bytes = Vec::new();
        let mut end = None;
        let mut whole = false;
        while end.is_none() && bytes.len() <= MAX_HEADER {
            let Some(piece) = reader.next(rt).await? else {
                whole = true;
                break;
            };
            let from = bytes.len();
            bytes.extend_from_slice(&piece);
            end = header::header_end(&bytes, from);
        }
        Ok(Self {
            bytes,
            end,
            whole,
            reader,
        })
    }

    /// The header section's fields (without the blank line), the blank line, and what
    /// followed; a text with no blank line is all fields when it was read whole.
    pub(crate) fn parts(&self) -> Option<(&[u8], &[u8], &[u8])> {
        let end = match self.end {
            Some(end) => end,
            None if self.whole => self.bytes.len(),
            None => return None,
        };
        let (section, rest) = self.bytes.split_at(end);
        let (fields, blank) = header::split_blank(section);
        Some((fields, blank, rest))
    }
}

impl Edited {
    /// Reads `text`'s header section and makes `edits` in it; with `body`, that is the
    /// new body.
    pub(crate) async fn new<R: Runtime>(
        rt: &R,
        text: &Arc<Frozen>,
        edits: &[Edit],
        body: Option<Vec<u8>>,
    ) -> io::Result<Self> {
        let head = Head::read(rt, text).await?;
        let first = match (head.parts(), body) {
            (Some((fields, _, _)), Some(body)) => {
                return Ok(Self {
                    first: Some([header::apply(fields, edits), b"\r\n".to_vec(), body].concat()),
                    reader: None,
                });
            }
            (_, _) if edits.is_empty() => head.bytes.clone(),
            (Some((fields, blank, rest)), _) => {
                [header::apply(fields, edits), blank.to_vec(), rest.to_vec()].concat()
            }
            (None, _) => {
                tracing::warn!(
                    octets = head.bytes.len(),
                    "header section too long to edit: the filters' changes were not made"
                );
                head.bytes.clone()
            }
        };
        Ok(Self {
            first: Some(first),
            reader: Some(head.reader),
        })
    }

    /// The next piece, until the end.
    pub(crate) async fn next<R: Runtime>(&mut self, rt: &R) -> io::Result<Option<Vec<u8>>> {
        match (self.first.take(), &mut self.reader) {
            (Some(first), _) => Ok(Some(first)),
            (None, Some(reader)) => reader.next(rt).await,
            (None, None) => Ok(None),
        }
    }
}
