//! Framing: `uint32 length (big-endian) | command byte | data`, the length counting the
//! command byte and the data; and the reading and writing of the fields inside (strings
//! NUL-terminated, numbers big-endian), for both directions.

use super::event::ProtocolError;

/// The longest packet (command byte and data) sent or accepted: 1 MiB of data and a
/// little room. libmilter's own limit is 64 KiB by default and 1 MiB at most; Postfix
/// sends body chunks of 64 KiB.
pub const MAX_PACKET: usize = (1 << 20) + 1024;

/// One packet: its command (or reply) byte and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The command byte (`SMFIC_*` from the MTA, `SMFIR_*` from the milter).
    pub code: u8,
    /// The data after it.
    pub data: Vec<u8>,
}

/// Splits a byte stream into [`Packet`]s, whatever pieces it arrives in. It holds at most
/// one packet (at most [`MAX_PACKET`] octets) and its length; a length of 0 or over
/// [`MAX_PACKET`] is an error, reported as soon as the four length octets are in, after
/// which the decoder takes no more.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The length octets read so far.
    head: [u8; 4],
    /// How many of them.
    head_len: usize,
    /// The command byte, once read.
    code: Option<u8>,
    /// The data read so far.
    data: Vec<u8>,
    /// Set after a bad length.
    failed: bool,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads from `input` until one packet is complete, an error is found, or the input
    /// runs out. Returns how many octets it used and what it found; call again with the
    /// rest. After an error it uses nothing more.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Option<Result<Packet, ProtocolError>>) {
        if self.failed {
            return (0, None);
        }
        let mut used = 0;
        while self.head_len < 4 {
            let Some(&octet) = input.get(used) else {
                return (used, None);
            };
            self.head[self.head_len] = octet;
            self.head_len += 1;
            used += 1;
            if self.head_len == 4 {
                let len = u32::from_be_bytes(self.head);
                if len == 0 || len as usize > MAX_PACKET {
                    self.failed = true;
                    return (used, Some(Err(ProtocolError::Length(len))));
                }
            }
        }
        let len = u32::from_be_bytes(self.head) as usize;
        if self.code.is_none() {
            let Some(&code) = input.get(used) else {
                return (used, None);
            };
            self.code = Some(code);
            used += 1;
            // Room for a typical packet; a long one grows as its octets arrive, so a
            // length alone never makes the decoder allocate much.
            self.data = Vec::with_capacity((len - 1).min(64 * 1024));
        }
        let need = len - 1 - self.data.len();
        let take = need.min(input.len() - used);
        self.data.extend_from_slice(&input[used..used + take]);
        used += take;
        if self.data.len() < len - 1 {
            return (used, None);
        }
        let packet = Packet {
            code: self.code.take().unwrap_or_default(),
            data: std::mem::take(&mut self.data),
        };
        self.head_len = 0;
        (used, Some(Ok(packet)))
    }

    /// Whether it holds part of a packet.
    pub fn is_partial(&self) -> bool {
        self.head_len > 0
    }

    /// How many octets of the current packet it holds.
    pub fn buffered(&self) -> usize {
        self.head_len + usize::from(self.code.is_some()) + self.data.len()
    }
}

/// Starts a packet in `out`: room for the length, then the code. Returns where it starts.
pub(super) fn start(out: &mut Vec<u8>, code: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(code);
    at
}

/// Writes the length of the packet started at `at`, now that its data is in.
pub(super) fn finish(out: &mut [u8], at: usize) {
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends `s` and its NUL.
pub(super) fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

/// Reads a packet's data field by field.
pub(super) struct Fields<'a> {
    code: u8,
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(super) fn new(code: u8, data: &'a [u8]) -> Self {
        Self { code, data }
    }

    pub(super) fn bad(&self, why: &'static str) -> ProtocolError {
        ProtocolError::Malformed {
            code: self.code,
            why,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(super) fn octet(&mut self) -> Result<u8, ProtocolError> {
        let (&first, rest) = self
            .data
            .split_first()
            .ok_or_else(|| self.bad("too short"))?;
        self.data = rest;
        Ok(first)
    }

    pub(super) fn u16(&mut self) -> Result<u16, ProtocolError> {
        let (n, rest) = self
            .data
            .split_first_chunk()
            .ok_or_else(|| self.bad("too short"))?;
        self.data = rest;
        Ok(u16::from_be_bytes(*n))
    }

    pub(super) fn u32(&mut self) -> Result<u32, ProtocolError> {
        let (n, rest) = self
            .data
            .split_first_chunk()
            .ok_or_else(|| self.bad("too short"))?;
        self.data = rest;
        Ok(u32::from_be_bytes(*n))
    }

    /// A NUL-terminated string, without its NUL.
    pub(super) fn cstr(&mut self) -> Result<&'a [u8], ProtocolError> {
        let nul = memchr::memchr(0, self.data).ok_or_else(|| self.bad("string without its NUL"))?;
        let s = &self.data[..nul];
        self.data = &self.data[nul + 1..];
        Ok(s)
    }

    pub(super) fn string(&mut self) -> Result<String, ProtocolError> {
        self.cstr().map(|s| String::from_utf8_lossy(s).into_owned())
    }

    /// A string that must not be empty (a header name, an address).
    pub(super) fn name(&mut self) -> Result<String, ProtocolError> {
        let s = self.string()?;
        if s.is_empty() {
            return Err(self.bad("empty name or address"));
        }
        Ok(s)
    }

    /// A last string that may be absent.
    pub(super) fn optional(&mut self) -> Result<Option<String>, ProtocolError> {
        if self.is_empty() {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// Nothing may follow the last field.
    pub(super) fn end(&self) -> Result<(), ProtocolError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(self.bad("data after the last field"))
        }
    }
}
