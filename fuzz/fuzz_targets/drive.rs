//! What the response-reader targets share: a byte source that hands out given parts one
//! read at a time, and a way to run the reader's futures without a runtime.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use lbsim::http1::{Fill, ReadError};

/// A source that returns `parts` one per read (empty parts dropped: a read returns at
/// least one byte), then the end of the stream. It never waits, so every future of a
/// reader over it completes on its first poll.
pub struct Parts(VecDeque<Vec<u8>>);

impl Parts {
    /// `bytes` cut at each of `cuts` (positions past the end are ignored, so are repeats).
    pub fn split(bytes: &[u8], cuts: &[usize]) -> Parts {
        let mut at: Vec<usize> = cuts.iter().copied().filter(|&c| c < bytes.len()).collect();
        at.sort_unstable();
        at.dedup();
        let mut parts = VecDeque::new();
        let mut from = 0;
        for cut in at.into_iter().chain([bytes.len()]) {
            if cut > from {
                parts.push_back(bytes[from..cut].to_vec());
                from = cut;
            }
        }
        Parts(parts)
    }

    /// The bytes never handed out.
    pub fn unread(&self) -> Vec<u8> {
        self.0.iter().flatten().copied().collect()
    }
}

impl Fill for Parts {
    async fn fill(&mut self, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
        Ok(match self.0.pop_front() {
            Some(part) => {
                buf.extend_from_slice(&part);
                part.len()
            }
            None => 0,
        })
    }
}

/// Runs `future` to its end. The sources here never wait, so a future that is pending
/// is a bug in the reader (it would wait for nothing) and fails the run.
pub fn finish<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the reader waits although its source never does"),
    }
}

/// A read error as the outcome to compare: its message, except that a bad head's preview
/// (the buffered bytes when httparse gave up) depends on how the bytes came in.
pub fn error_text(error: ReadError) -> String {
    match error {
        ReadError::BadHead { error, .. } => format!("not an HTTP/1.1 response ({error})"),
        other => other.to_string(),
    }
}

/// Two cut positions in `0..=len` taken from the first four bytes of the input, and the
/// rest of the input.
pub fn cuts_and_rest(data: &[u8]) -> Option<([usize; 2], &[u8])> {
    let (head, rest) = data.split_at_checked(4)?;
    let at = |i: usize| usize::from(u16::from_le_bytes([head[i], head[i + 1]])) % (rest.len() + 1);
    Some(([at(0), at(2)], rest))
}
