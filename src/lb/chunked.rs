//! Follows a chunked body to its last byte, without decoding it.
//!
//! Two readers rely on it, so that they can never disagree on where a body ends:
//! - the client socket's gate (`client.rs`), which only needs to know where a request
//!   body ends, because the bytes after it are the next request's head, which the cloud's
//!   rules must judge before the session sees it (and the bytes of a body must never be
//!   judged as a head);
//! - the data plane's decoder (`h1::wire::ChunkedDecoder`), which hands on the data
//!   between the framing this scanner reads, for request and response bodies alike.
//!
//! The scanner is fed the bytes as they arrive, split anywhere, and keeps only a few
//! integers of state. It reads the framing exactly as hyper's decoder does (hyper 1.12,
//! `src/proto/h1/decode.rs`, the reference the fuzz targets below run against): hex
//! sizes of any length that fit in 64 bits, whitespace and `;extensions` after them, CRLF line ends only, and trailer
//! lines that end at CRLF alone (a bare LF is a byte of the line). Anything hyper refuses
//! is [`Scan::Invalid`]: the decoder then fails the body at the same byte (a 400 for the
//! client, and the connection closes), and the gate stops following the framing.
//! `fuzz/fuzz_targets/chunked_vs_hyper.rs` checks the scanner against hyper itself, and
//! `fuzz/fuzz_targets/h1_wire.rs` the decoder against the scanner.

/// What a call to [`ChunkedScanner::scan`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Every byte given belongs to the body, and the body goes on.
    Body,
    /// The body ends after this many of the bytes given; the rest is the next request.
    End(usize),
    /// Not chunked framing: where the body ends cannot be known.
    Invalid,
}

/// Where the scanner is inside the chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size (`digits`: whether one was read yet).
    Size { size: u64, digits: bool },
    /// Whitespace after the size: more of it, a `;extension` or CR may follow.
    SizeLws { size: u64 },
    /// A chunk extension, up to the CR (a bare LF in it is refused, as hyper does).
    Extension { size: u64 },
    /// A CR ended the size line; LF must follow.
    SizeLf { size: u64 },
    /// Chunk data: this many bytes left.
    Data(u64),
    /// After the data: CR must follow.
    DataCr,
    /// After the data's CR: LF must follow.
    DataLf,
    /// At the start of a trailer line, or of the empty line that ends the body.
    TrailerStart,
    /// Inside a trailer line, which only CRLF ends.
    Trailer,
    /// A CR inside a trailer line: LF must follow.
    TrailerLf,
    /// A CR at the start of a line: LF ends the body.
    EndLf,
}

/// The state of one chunked body being followed.
#[derive(Clone, Copy, Debug)]
pub struct ChunkedScanner {
    state: State,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size {
                size: 0,
                digits: false,
            },
        }
    }
}

impl ChunkedScanner {
    /// Bytes of chunk data left in the current chunk, when the scanner is inside one:
    /// a decoder hands those bytes on as they are and feeds only the framing byte by byte.
    pub fn data_left(&self) -> Option<u64> {
        match self.state {
            State::Data(left) => Some(left),
            _ => None,
        }
    }

    /// True after the last chunk, in the trailer section (or its closing empty line).
    pub fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart | State::Trailer | State::TrailerLf | State::EndLf
        )
    }

    /// Feeds the next bytes of the body.
    pub fn scan(&mut self, bytes: &[u8]) -> Scan {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                State::Data(left) => {
                    // Skip the data in one step: bodies are mostly data.
                    let take = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                // Any number of digits, leading zeros included, as long as the size fits
                // in 64 bits: hyper's decoder reads the size the same way. (Refusing a
                // size hyper accepts would stop the following here while hyper goes on
                // serving the requests after the body, unjudged.)
                State::Size { size, digits } => match hex(b) {
                    Some(d) => match size.checked_mul(16) {
                        Some(shifted) => State::Size {
                            size: shifted | u64::from(d),
                            digits: true,
                        },
                        None => return Scan::Invalid,
                    },
                    None if !digits => return Scan::Invalid,
                    None => match b {
                        b'\r' => State::SizeLf { size },
                        b';' => State::Extension { size },
                        b' ' | b'\t' => State::SizeLws { size },
                        _ => return Scan::Invalid,
                    },
                },
                State::SizeLws { size } => match b {
                    b' ' | b'\t' => State::SizeLws { size },
                    b';' => State::Extension { size },
                    b'\r' => State::SizeLf { size },
                    _ => return Scan::Invalid,
                },
                State::Extension { size } => match b {
                    b'\r' => State::SizeLf { size },
                    b'\n' => return Scan::Invalid,
                    _ => State::Extension { size },
                },
                State::SizeLf { size } => match b {
                    b'\n' => after_size_line(size),
                    _ => return Scan::Invalid,
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return Scan::Invalid,
                },
                State::DataLf => match b {
                    b'\n' => State::Size {
                        size: 0,
                        digits: false,
                    },
                    _ => return Scan::Invalid,
                },
                // A bare LF neither ends the body nor a trailer line: hyper reads on to
                // the next CRLF (regression: the scanner ended the body at `\n\n`, so a
                // head after it was judged while hyper took it for trailers and served
                // the bytes the gate had passed as that head's body, unjudged).
                State::TrailerStart => match b {
                    b'\r' => State::EndLf,
                    _ => State::Trailer,
                },
                State::Trailer => match b {
                    b'\r' => State::TrailerLf,
                    _ => State::Trailer,
                },
                State::TrailerLf => match b {
                    b'\n' => State::TrailerStart,
                    _ => return Scan::Invalid,
                },
                State::EndLf => match b {
                    b'\n' => return Scan::End(i + 1),
                    _ => return Scan::Invalid,
                },
            };
            i += 1;
        }
        Scan::Body
    }
}

fn after_size_line(size: u64) -> State {
    if size == 0 {
        State::TrailerStart
    } else {
        State::Data(size)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `bytes` split at `cut` into two calls; where the body ends, counted from the start.
    fn end_when_split(bytes: &[u8], cut: usize) -> Option<usize> {
        let mut scanner = ChunkedScanner::default();
        match scanner.scan(&bytes[..cut]) {
            Scan::End(n) => return Some(n),
            Scan::Invalid => return None,
            Scan::Body => {}
        }
        match scanner.scan(&bytes[cut..]) {
            Scan::End(n) => Some(cut + n),
            _ => None,
        }
    }

    #[test]
    fn finds_the_end_of_a_body_split_at_every_position() {
        let next = b"GET /next HTTP/1.1\r\n\r\n";
        let bodies: [&[u8]; 7] = [
            b"3\r\nabc\r\n0\r\n\r\n",
            // More than 16 digits, as hyper reads them (regression: the scanner refused
            // them, stopped following the body, and the requests pipelined after it
            // reached hyper and the app without being judged).
            b"00000000000000000003\r\nabc\r\n00000000000000000000\r\n\r\n",
            b"A;name=value\r\n0123456789\r\n0\r\n\r\n",
            b"3 \t;a=\"b;c\"\r\nabc\r\n0\r\n\r\n",
            b"1\r\nz\r\n0\r\nTrailer: x\r\nOther: y\r\n\r\n",
            // A bare LF is a byte of a trailer line, as hyper reads it: the empty line
            // after it is not the end, and the POST head is part of the trailers.
            b"1\r\nz\r\n0\r\nX: a\n\nPOST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"0\r\n\r\n",
        ];
        for body in bodies {
            let stream = [body, next].concat();
            for cut in 0..=stream.len() {
                assert_eq!(
                    end_when_split(&stream, cut),
                    Some(body.len()),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn data_that_looks_like_framing_is_data() {
        let body = b"5\r\n0\r\n\r\n\r\n0\r\n\r\n";
        assert_eq!(ChunkedScanner::default().scan(body), Scan::End(body.len()));
    }

    #[test]
    fn a_body_not_yet_ended_is_body() {
        let mut scanner = ChunkedScanner::default();
        assert_eq!(scanner.scan(b"10\r\n0123456789"), Scan::Body);
        assert_eq!(scanner.scan(b"abcdef\r\n"), Scan::Body);
        assert_eq!(scanner.scan(b"0\r\n\r\nGET"), Scan::End(5));
    }

    #[test]
    fn what_is_not_chunked_framing_is_invalid() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"3\r\nabcX",
            b"3\rX",
            // What hyper refuses: bare LF line ends outside trailers, junk after the
            // size's whitespace, a LF inside an extension, a trailer CR without LF.
            b"3\nabc\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"3 x\r\n",
            b"3;a\nb\r\n",
            b"0\r\nX: a\rb",
            // Over 64 bits (hyper: "invalid chunk size: overflow").
            b"11111111111111111\r\n",
            b"10000000000000000\r\n",
            b"0\r\n\rX",
        ] {
            assert_eq!(
                ChunkedScanner::default().scan(bad),
                Scan::Invalid,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
