//! A message's header section as octets: where it ends, its fields (a first line and its
//! continuation lines), and the edits content filters ask for (rspamd's
//! `add_headers`/`remove_headers` and subject rewrite, a milter's add, insert and change
//! header). Pure and bounded: an edit touches the header section only, which the caller
//! holds in memory (at most [`MAX_HEADER`] octets); the body is never read here.

/// The longest header section held for reading or editing. Past it, fields forged in
/// our name could not be removed, so while verdict fields are written (sender checks,
/// spam filter or DNS blocklists on) the message is refused (`552 5.3.4`); a milter's
/// edits are not made.
pub const MAX_HEADER: usize = 256 * 1024;

/// Where a message's header section ends: the offset just past its blank line
/// (`CRLF CRLF`, or a bare-LF `LF LF`), if it has one in `text`. A text read piece by
/// piece is searched again from `from` on (what was searched before, less the three
/// octets a blank line could straddle).
pub fn header_end(text: &[u8], from: usize) -> Option<usize> {
    if text.starts_with(b"\r\n") {
        return Some(2);
    }
    if text.starts_with(b"\n") {
        return Some(1);
    }
    let from = from.saturating_sub(3).min(text.len());
    let window = &text[from..];
    let crlf = memchr::memmem::find(window, b"\r\n\r\n").map(|i| i + 4);
    let lf = memchr::memmem::find(window, b"\n\n").map(|i| i + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    end.map(|e| e + from)
}

/// A header section up to its end (as [`header_end`] found it) split into its fields
/// and its blank line (empty when there was none).
pub fn split_blank(section: &[u8]) -> (&[u8], &[u8]) {
    let blank = if section.ends_with(b"\r\n\r\n") || section == b"\r\n" {
        2
    } else if section.ends_with(b"\n\n") || section == b"\n" {
        1
    } else {
        0
    };
    section.split_at(section.len() - blank)
}

/// The fields of a header section (without its blank line), each as the octets of its
/// first line and continuation lines, line ends included. Octets before the first field
/// (a continuation line with nothing to continue) form a field of their own.
pub fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < header.len() {
        let end = memchr::memchr(b'\n', &header[at..]).map_or(header.len(), |i| at + i + 1);
        let continuation = matches!(header[at], b' ' | b'\t');
        if !continuation && at > start {
            out.push(&header[start..at]);
            start = at;
        }
        at = end;
    }
    if start < header.len() {
        out.push(&header[start..]);
    }
    out
}

/// A field's name (before its colon, trimmed), or nothing for a line without a colon.
pub fn name(field: &[u8]) -> &[u8] {
    memchr::memchr(b':', field).map_or(&[][..], |c| field[..c].trim_ascii())
}

/// A field's value, unfolded: after the colon, its line ends removed and surrounding
/// white space trimmed.
pub fn value(field: &[u8]) -> String {
    let raw = memchr::memchr(b':', field).map_or(&[][..], |c| &field[c + 1..]);
    let text = String::from_utf8_lossy(raw);
    text.replace("\r\n", "")
        .replace('\n', "")
        .trim()
        .to_string()
}

/// The fields of `header` whose first line `keep` accepts, continuation lines included;
/// with how many were kept, of how many.
pub fn filter_fields(header: &[u8], keep: impl Fn(&[u8]) -> bool) -> (Vec<u8>, usize, usize) {
    let mut out = Vec::with_capacity(header.len());
    let (mut kept, mut all) = (0, 0);
    for field in fields(header) {
        all += 1;
        if keep(field) {
            kept += 1;
            out.extend_from_slice(field);
        }
    }
    (out, kept, all)
}

/// One edit of a header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// A field added after the last one.
    Add {
        /// Its name.
        name: String,
        /// Its value (folded lines are written with CRLF).
        value: String,
    },
    /// A field inserted before the field at `index` (0: first), or last if there are
    /// fewer (a milter's `SMFIR_INSHEADER`).
    Insert {
        /// Where.
        index: usize,
        /// Its name.
        name: String,
        /// Its value.
        value: String,
    },
    /// The `nth` field named `name` (from 1, in order, names compared without regard to
    /// case) given a new value, or removed when `value` is `None` (a milter's
    /// `SMFIR_CHGHEADER`). Nothing happens when there is no such field, unless a value is
    /// given, which is then added (as Sendmail does).
    Change {
        /// Its name.
        name: String,
        /// Which one.
        nth: usize,
        /// The new value, or `None` to remove it.
        value: Option<String>,
    },
    /// Fields named `name` removed: all of them (`nth` 0), the `nth` from the top
    /// (positive) or from the bottom (negative) (rspamd's `remove_headers`).
    Remove {
        /// Their name.
        name: String,
        /// Which.
        nth: i64,
    },
}

/// `name: value` as a field, CRLF-terminated, its folded lines with CRLF.
fn field(name: &str, value: &str) -> Vec<u8> {
    let value = value.replace("\r\n", "\n").replace('\n', "\r\n");
    let sep = if value.starts_with([' ', '\t']) {
        ":"
    } else {
        ": "
    };
    format!("{name}{sep}{value}\r\n").into_bytes()
}

/// `header` (a header section without its blank line) with `edits` applied in order.
pub fn apply(header: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut list: Vec<Vec<u8>> = fields(header).into_iter().map(<[u8]>::to_vec).collect();
    let named = |list: &[Vec<u8>], n: &str| -> Vec<usize> {
        (0..list.len())
            .filter(|&i| name(&list[i]).eq_ignore_ascii_case(n.as_bytes()))
            .collect()
    };
    for edit in edits {
        match edit {
            Edit::Add { name, value } => list.push(field(name, value)),
            Edit::Insert { index, name, value } => {
                list.insert((*index).min(list.len()), field(name, value));
            }
            Edit::Change { name, nth, value } => {
                let at = named(&list, name).get(nth.saturating_sub(1)).copied();
                match (at, value) {
                    (Some(i), Some(v)) => {
                        // The field keeps its name as it was spelled.
                        let spelled = String::from_utf8_lossy(self::name(&list[i])).into_owned();
                        list[i] = field(&spelled, v);
                    }
                    (Some(i), None) => drop(list.remove(i)),
                    (None, Some(v)) => list.push(field(name, v)),
                    (None, None) => {}
                }
            }
            Edit::Remove { name, nth } => {
                let at = named(&list, name);
                let chosen: Vec<usize> = match *nth {
                    0 => at,
                    n if n > 0 => at.get(n as usize - 1).copied().into_iter().collect(),
                    n => at
                        .len()
                        .checked_sub(n.unsigned_abs() as usize)
                        .and_then(|i| at.get(i).copied())
                        .into_iter()
                        .collect(),
                };
                for i in chosen.into_iter().rev() {
                    list.remove(i);
                }
            }
        }
    }
    list.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] = b"Received: from a\r\n\tby b\r\n\
        Subject: hi\r\n\
        X-Spam: forged\r\n\
        To: u@example.com\r\n\
        x-spam: again\r\n";

    #[test]
    fn fields_keep_their_continuations() {
        let f = fields(HEADER);
        assert_eq!(f.len(), 5);
        assert_eq!(f[0], b"Received: from a\r\n\tby b\r\n");
        assert_eq!(name(f[1]), b"Subject");
        assert_eq!(value(f[0]), "from a\tby b");
        assert_eq!(fields(b"").len(), 0);
    }

    #[test]
    fn edits_in_order() {
        let edits = [
            Edit::Remove {
                name: "X-Spam".into(),
                nth: 0,
            },
            Edit::Change {
                name: "subject".into(),
                nth: 1,
                value: Some("[SPAM] hi".into()),
            },
            Edit::Insert {
                index: 0,
                name: "X-First".into(),
                value: "1".into(),
            },
            Edit::Add {
                name: "X-Last".into(),
                value: "a\n\tb".into(),
            },
            Edit::Change {
                name: "To".into(),
                nth: 1,
                value: None,
            },
            Edit::Change {
                name: "X-Missing".into(),
                nth: 2,
                value: None,
            },
        ];
        assert_eq!(
            String::from_utf8(apply(HEADER, &edits)).unwrap(),
            "X-First: 1\r\n\
             Received: from a\r\n\tby b\r\n\
             Subject: [SPAM] hi\r\n\
             X-Last: a\r\n\tb\r\n"
        );
    }

    #[test]
    fn remove_counts_from_either_end() {
        let last = apply(
            HEADER,
            &[Edit::Remove {
                name: "x-spam".into(),
                nth: -1,
            }],
        );
        assert!(String::from_utf8_lossy(&last).contains("X-Spam: forged"));
        assert!(!String::from_utf8_lossy(&last).contains("again"));
        let first = apply(
            HEADER,
            &[Edit::Remove {
                name: "x-spam".into(),
                nth: 1,
            }],
        );
        assert!(!String::from_utf8_lossy(&first).contains("forged"));
        let none = apply(
            HEADER,
            &[Edit::Remove {
                name: "x-spam".into(),
                nth: 5,
            }],
        );
        assert_eq!(none, HEADER);
    }

    #[test]
    fn blank_lines_split_off() {
        assert_eq!(
            split_blank(b"A: b\r\n\r\n"),
            (&b"A: b\r\n"[..], &b"\r\n"[..])
        );
        assert_eq!(split_blank(b"A: b\n\n"), (&b"A: b\n"[..], &b"\n"[..]));
        assert_eq!(split_blank(b"\r\n"), (&b""[..], &b"\r\n"[..]));
        assert_eq!(split_blank(b"A: b\r\n"), (&b"A: b\r\n"[..], &b""[..]));
    }

    #[test]
    fn header_section_ends() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody", 0), Some(8));
        assert_eq!(header_end(b"\r\nbody", 0), Some(2));
        assert_eq!(header_end(b"A: b\r\nC: d\r\n", 0), None);
        assert_eq!(header_end(b"A: b\n\nbody", 0), Some(6));
        // Searched again from a line's end: that line end is not a blank line.
        assert_eq!(header_end(b"A: b\r\nC: d\r\n", 6), None);
        assert_eq!(header_end(b"A: b\r\nC: d\r\n\r\nx", 12), Some(14));
    }
}
