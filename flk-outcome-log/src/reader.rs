//! Reading durable records back: the blocking [`ReadFrom`] iterator and the live [`Subscription`] stream.
//!
//! Readers work from the segment files and never touch the writer: they learn how far the log is
//! durable from the writer's [`DurableMark`] (a `watch` channel) and read no byte past it, so a
//! slow reader cannot hold up appends and never sees a batch that might still be rolled back.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::error::{CorruptReason, LogError};
use crate::format::{
    MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, decode_record, frame_len,
    segment_file_name,
};
use crate::recovery::check_header;
use crate::scan::{SegmentFile, list_segments};
use crate::writer::DurableMark;

/// Bytes read from a segment in one go (a single bigger record is read whole).
const READ_CHUNK: usize = 256 * 1024;

/// One durable record: its seq and payload.
pub type Record = (u64, Bytes);

/// A reader's position: which segment, where in it, and which seq comes next.
pub(crate) struct Cursor {
    dir: PathBuf,
    /// Records below this seq are read and checked but not returned.
    from_seq: u64,
    segment: Option<OpenSegment>,
    next_seq: u64,
}

struct OpenSegment {
    first_seq: u64,
    path: PathBuf,
    file: File,
    offset: u64,
}

impl Cursor {
    pub(crate) fn new(dir: PathBuf, from_seq: u64) -> Cursor {
        let from_seq = from_seq.max(1);
        Cursor {
            dir,
            from_seq,
            segment: None,
            next_seq: 1,
        }
    }

    /// The seq the cursor would return next, or a lower one it still has to skip over.
    pub(crate) fn next_seq(&self) -> u64 {
        self.segment
            .as_ref()
            .map_or(self.from_seq, |_| self.next_seq)
    }

    /// Reads at most one chunk of durable records. `None` when everything durable under `mark`
    /// has been read; `Some` may be empty (records below `from_seq` were skipped, or the cursor
    /// moved to the next segment).
    pub(crate) fn read_more(&mut self, mark: DurableMark) -> Result<Option<Vec<Record>>, LogError> {
        if self.next_seq() > mark.seq {
            return Ok(None);
        }
        let Some(segment) = self.segment.as_mut() else {
            self.position(mark)?;
            return Ok(Some(Vec::new()));
        };
        let end = if segment.first_seq == mark.segment_first_seq {
            mark.segment_len
        } else {
            // An older segment: the writer has moved on, its length is final.
            segment
                .file
                .metadata()
                .map_err(|e| LogError::io("stat segment", &segment.path, e))?
                .len()
        };
        if segment.offset >= end {
            if segment.first_seq == mark.segment_first_seq {
                // The mark promises records this segment does not hold.
                return Err(LogError::corrupt(
                    &segment.path,
                    segment.offset,
                    CorruptReason::TruncatedRecord,
                ));
            }
            // Segments are named by their first seq: the next one starts at `next_seq`.
            let next = SegmentFile {
                first_seq: self.next_seq,
                path: self.dir.join(segment_file_name(self.next_seq)),
            };
            self.open(&next)?;
            return Ok(Some(Vec::new()));
        }
        let records = read_chunk(segment, end, &mut self.next_seq, self.from_seq)?;
        Ok(Some(records))
    }

    /// Opens the segment holding `from_seq` (or the newest durable one before it).
    fn position(&mut self, mark: DurableMark) -> Result<(), LogError> {
        let segments = list_segments(&self.dir)?;
        // Segments after the mark's are not durable yet (or are leftovers of a failed rotation).
        let start = segments
            .iter()
            .rfind(|s| s.first_seq <= mark.segment_first_seq && s.first_seq <= self.from_seq);
        match start {
            Some(start) => self.open(&start.clone()),
            None => Err(LogError::corrupt(
                self.dir.join(segment_file_name(1)),
                0,
                CorruptReason::MissingStart(segments.first().map_or(0, |s| s.first_seq)),
            )),
        }
    }

    fn open(&mut self, segment: &SegmentFile) -> Result<(), LogError> {
        let file = File::open(&segment.path)
            .map_err(|e| LogError::io("open segment", &segment.path, e))?;
        let mut header = vec![0u8; SEGMENT_HEADER_LEN as usize];
        let read = read_up_to(&file, &mut header, 0)
            .map_err(|e| LogError::io("read segment", &segment.path, e))?;
        check_header(segment, &header[..read])?;
        self.segment = Some(OpenSegment {
            first_seq: segment.first_seq,
            path: segment.path.clone(),
            file,
            offset: SEGMENT_HEADER_LEN,
        });
        self.next_seq = segment.first_seq;
        Ok(())
    }
}

/// Reads the records in `[segment.offset, end)` up to one chunk, checking each one.
fn read_chunk(
    segment: &mut OpenSegment,
    end: u64,
    next_seq: &mut u64,
    from_seq: u64,
) -> Result<Vec<Record>, LogError> {
    let available = usize::try_from(end - segment.offset).unwrap_or(usize::MAX);
    let mut want = available.min(READ_CHUNK);
    let mut chunk = vec![0u8; want];
    read_exact(segment, &mut chunk)?;
    // A record longer than the chunk is read whole.
    if want >= RECORD_HEADER_LEN {
        let mut len = [0u8; 4];
        len.copy_from_slice(&chunk[0..4]);
        let payload_len = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
        if payload_len <= MAX_PAYLOAD_LEN && frame_len(payload_len) > want {
            want = frame_len(payload_len).min(available);
            chunk = vec![0u8; want];
            read_exact(segment, &mut chunk)?;
        }
    }
    let chunk = Bytes::from(chunk);
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < chunk.len() {
        let checked = decode_record(&chunk[pos..]).and_then(|frame| {
            if frame.seq == *next_seq {
                Ok(frame)
            } else {
                Err(CorruptReason::UnexpectedSeq {
                    expected: *next_seq,
                    found: frame.seq,
                })
            }
        });
        let frame = match checked {
            Ok(frame) => frame,
            // Return the good records first: the next read starts at this frame, and either
            // reads the rest of it (it continues past this chunk) or reports the damage.
            Err(_) if pos > 0 => break,
            Err(reason) => {
                return Err(LogError::corrupt(
                    &segment.path,
                    segment.offset + pos as u64,
                    reason,
                ));
            }
        };
        if frame.seq >= from_seq {
            let payload = frame.payload_range();
            records.push((
                frame.seq,
                chunk.slice(pos + payload.start..pos + payload.end),
            ));
        }
        *next_seq = next_seq.saturating_add(1);
        pos += frame.len();
    }
    segment.offset += pos as u64;
    Ok(records)
}

fn read_exact(segment: &OpenSegment, buf: &mut [u8]) -> Result<(), LogError> {
    segment
        .file
        .read_exact_at(buf, segment.offset)
        .map_err(|e| LogError::io("read segment", &segment.path, e))
}

/// Fills as much of `buf` as the file has from `offset` on; returns how much.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Durable records from a seq on, as they were when [`OutcomeLog::read_from`](crate::OutcomeLog::read_from)
/// was called. Blocking file reads: in async code, drive it from `spawn_blocking` or use
/// [`OutcomeLog::subscribe`](crate::OutcomeLog::subscribe). Ends after the first error.
pub struct ReadFrom {
    cursor: Cursor,
    mark: DurableMark,
    pending: VecDeque<Record>,
    done: bool,
}

impl ReadFrom {
    pub(crate) fn new(cursor: Cursor, mark: DurableMark) -> ReadFrom {
        ReadFrom {
            cursor,
            mark,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

impl Iterator for ReadFrom {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            match self.cursor.read_more(self.mark) {
                Ok(Some(records)) => self.pending.extend(records),
                Ok(None) => self.done = true,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
    }
}

/// History from a seq on, then every record as it becomes durable: no gap, no duplicate, across
/// segment rotation. Ends after the first error, or once the log is closed (every handle dropped)
/// and everything durable has been delivered. File reads run on tokio's blocking pool, so poll
/// it inside a tokio runtime.
pub struct Subscription {
    inner: BoxStream<'static, Result<Record, LogError>>,
}

impl Subscription {
    pub(crate) fn new(cursor: Cursor, durable: watch::Receiver<DurableMark>) -> Subscription {
        let state = Follow {
            cursor: Some(cursor),
            durable,
            pending: VecDeque::new(),
            closed: false,
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        });
        Subscription {
            inner: Box::pin(stream),
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Record, LogError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// The state behind a [`Subscription`].
struct Follow {
    /// `None` only while a read runs on the blocking pool.
    cursor: Option<Cursor>,
    durable: watch::Receiver<DurableMark>,
    pending: VecDeque<Record>,
    /// The writer is gone: no mark will come after the current one.
    closed: bool,
    done: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Result<Record, LogError>> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            let mark = *self.durable.borrow_and_update();
            let mut cursor = self.cursor.take()?;
            if cursor.next_seq() <= mark.seq {
                let read = tokio::task::spawn_blocking(move || {
                    let records = cursor.read_more(mark);
                    (cursor, records)
                })
                .await;
                match read {
                    Ok((cursor, Ok(records))) => {
                        self.cursor = Some(cursor);
                        self.pending.extend(records.into_iter().flatten());
                    }
                    Ok((_, Err(error))) => {
                        self.done = true;
                        return Some(Err(error));
                    }
                    // The runtime is shutting down.
                    Err(_) => {
                        self.done = true;
                        return Some(Err(LogError::Closed));
                    }
                }
                continue;
            }
            self.cursor = Some(cursor);
            if self.closed {
                self.done = true;
                return None;
            }
            // Wakes on the next commit (a mark published since `borrow_and_update` counts).
            if self.durable.changed().await.is_err() {
                self.closed = true;
            }
        }
    }
}
