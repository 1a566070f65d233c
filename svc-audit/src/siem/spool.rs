//! A sink's on-disk spool: the envelopes read from the log and not yet acknowledged by the
//! SIEM, and the cursor of what was acknowledged.
//!
//! ```text
//! <data_dir>/siem/<sink>/spool/<segment:020>.log   lines: LEAF ANCHOR CHECKPOINT TIME_MS ID JSON
//! <data_dir>/siem/<sink>/cursor.json               {"segment","offset","position","delivered"}
//! <data_dir>/siem/<sink>/dead-letters.ndjson       events the SIEM refused for good
//! ```
//!
//! Each line carries the reader's [`Position`] *after* its event, so the last line of the
//! spool says where reading the log resumes, and the cursor (written after every
//! acknowledged request, by rename) says where sending resumes: after a crash the events
//! between the two are sent again (at-least-once), never skipped.
//!
//! The spool is a cache of the log, not the only copy: lines are not fsync'd, and a spool
//! damaged by a power loss is cut at its first bad line on open; reading resumes from the
//! last good line's position (or the cursor's), re-deriving the rest from the log. Its size
//! is bounded by `spool_max_bytes`: when full, the stage stops reading the log, which keeps
//! everything, so a long outage loses nothing and never holds up the submit path.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::event::Event;

/// A segment is closed once it holds this many bytes.
const SEGMENT_BYTES: u64 = 64 << 20;

/// Where the stage is in its sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The next log entry to read.
    pub leaf: u64,
    /// The next anchor journal id to read.
    pub anchor: u64,
    /// The size of the last checkpoint an event was made for.
    pub checkpoint: u64,
}

/// The acknowledged point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub segment: u64,
    pub offset: u64,
    pub position: Position,
    /// Events acknowledged since the sink was first started.
    pub delivered: u64,
}

/// One spooled event and where it ends.
#[derive(Debug, Clone)]
pub struct Item {
    pub segment: u64,
    /// Offset just past the line.
    pub end: u64,
    pub position: Position,
    pub time_ms: u64,
    pub id: String,
    pub json: String,
}

#[derive(Debug)]
struct State {
    /// Segment id -> bytes written.
    segments: BTreeMap<u64, u64>,
    file: Option<File>,
    head: Position,
    ack: Cursor,
}

impl State {
    fn spooled_bytes(&self) -> u64 {
        self.segments
            .range(self.ack.segment..)
            .map(|(_, len)| *len)
            .sum::<u64>()
            .saturating_sub(self.ack.offset)
    }
}

/// A sink's spool (shared by its reader and sender tasks).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("spool").join(format!("{id:020}.log"))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// A line's fields, or `None` when it is not a whole line of the format.
fn parse_line(line: &[u8]) -> Option<(Position, u64, &str, &str)> {
    let text = std::str::from_utf8(line.strip_suffix(b"\n")?).ok()?;
    let mut parts = text.splitn(6, ' ');
    let leaf = parts.next()?.parse().ok()?;
    let anchor = parts.next()?.parse().ok()?;
    let checkpoint = parts.next()?.parse().ok()?;
    let time_ms = parts.next()?.parse().ok()?;
    let id = parts.next()?;
    let json = parts.next()?;
    if id.is_empty()
        || !id.bytes().all(|b| b.is_ascii_hexdigit())
        || !json.starts_with('{')
        || !json.ends_with('}')
    {
        return None;
    }
    Some((
        Position {
            leaf,
            anchor,
            checkpoint,
        },
        time_ms,
        id,
        json,
    ))
}

impl Spool {
    /// Opens (creating) the spool in `dir`, cutting a damaged tail (module docs).
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Spool> {
        let spool_dir = dir.join("spool");
        std::fs::create_dir_all(&spool_dir).map_err(|e| io_err("cannot create", &spool_dir, e))?;
        let cursor_path = dir.join("cursor.json");
        let ack: Cursor = match std::fs::read(&cursor_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %cursor_path.display(), error = %e, "unreadable SIEM cursor: sending again from the start of the spool");
                Cursor::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Cursor::default(),
            Err(e) => return Err(io_err("cannot read", &cursor_path, e)),
        };
        let mut ids: Vec<u64> = std::fs::read_dir(&spool_dir)
            .map_err(|e| io_err("cannot list", &spool_dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse::<u64>()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut head = ack.position;
        let mut damaged = false;
        for id in ids {
            let path = segment_path(dir, id);
            if id < ack.segment || damaged {
                std::fs::remove_file(&path).map_err(|e| io_err("cannot remove", &path, e))?;
                continue;
            }
            let (good, last) = scan(&path)?;
            let len = std::fs::metadata(&path)
                .map_err(|e| io_err("cannot stat", &path, e))?
                .len();
            if good < len {
                tracing::warn!(segment = %path.display(), kept = good, cut = len - good, "SIEM spool cut at its first damaged line; the rest is read from the log again");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_err("cannot open", &path, e))?;
                f.set_len(good)
                    .map_err(|e| io_err("cannot cut", &path, e))?;
                damaged = true;
            }
            if let Some(p) = last
                && (id > ack.segment || good > ack.offset)
            {
                head = p;
            }
            segments.insert(id, good);
        }
        let mut ack = ack;
        // A cursor past what survived (its segment lost in a power cut) acknowledges it all.
        // (Without its segment the next append recreates it, from offset 0.)
        if segments
            .get(&ack.segment)
            .is_none_or(|len| *len < ack.offset)
        {
            ack.offset = segments.get(&ack.segment).copied().unwrap_or(0);
        }
        if head.leaf < ack.position.leaf {
            head = ack.position;
        }
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(State {
                segments,
                file: None,
                head,
                ack,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bound on [`Spool::bytes`].
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where reading the log resumes.
    pub fn head(&self) -> Position {
        self.lock().head
    }

    /// The acknowledged point.
    pub fn acknowledged(&self) -> Cursor {
        self.lock().ack
    }

    /// Bytes spooled and not yet acknowledged.
    pub fn bytes(&self) -> u64 {
        self.lock().spooled_bytes()
    }

    /// Whether `extra` more bytes fit under the bound.
    pub fn has_room(&self, extra: u64) -> bool {
        self.lock().spooled_bytes() + extra <= self.max_bytes
    }

    /// The line of `event` with the position after it.
    pub fn line(event: &Event, after: Position) -> String {
        let mut out = String::new();
        Spool::push_line(&mut out, event, after);
        out
    }

    /// Appends the line of `event` to `out` ([`Spool::line`] without a String of its own).
    pub fn push_line(out: &mut String, event: &Event, after: Position) {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{} {} {} {} {} ",
            after.leaf, after.anchor, after.checkpoint, event.time_ms, event.id
        );
        out.push_str(&event.json);
        out.push('\n');
    }

    /// Appends encoded lines ([`Spool::line`]) that bring the head to `head`.
    pub fn append(&self, lines: &str, head: Position) -> std::io::Result<()> {
        let mut st = self.lock();
        let (last, len) = st
            .segments
            .last_key_value()
            .map_or((st.ack.segment, 0), |(id, len)| (*id, *len));
        let (id, len) = if len >= SEGMENT_BYTES {
            st.file = None;
            (last + 1, 0)
        } else {
            (last, len)
        };
        let path = segment_path(&self.dir, id);
        if st.file.is_none() {
            st.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_err("cannot open", &path, e))?,
            );
        }
        if let Some(f) = st.file.as_mut() {
            f.write_all(lines.as_bytes())
                .map_err(|e| io_err("cannot write", &path, e))?;
        }
        st.segments.insert(id, len + lines.len() as u64);
        st.head = head;
        Ok(())
    }

    /// Up to `max_events` items (and about `max_bytes` of JSON, at least one item) from
    /// `from` (a segment and offset) on.
    pub fn read(
        &self,
        from: (u64, u64),
        max_events: usize,
        max_bytes: usize,
    ) -> std::io::Result<Vec<Item>> {
        let plan: Vec<(u64, u64)> = {
            let st = self.lock();
            st.segments
                .range(from.0..)
                .map(|(id, len)| (*id, *len))
                .collect()
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (id, len) in plan {
            let start = if id == from.0 { from.1 } else { 0 };
            if start >= len {
                continue;
            }
            let path = segment_path(&self.dir, id);
            let mut f = File::open(&path).map_err(|e| io_err("cannot open", &path, e))?;
            f.seek(SeekFrom::Start(start))
                .map_err(|e| io_err("cannot seek", &path, e))?;
            let mut r = BufReader::with_capacity(1 << 20, f.take(len - start));
            let mut offset = start;
            let mut line = Vec::new();
            loop {
                if out.len() >= max_events || (bytes >= max_bytes && !out.is_empty()) {
                    return Ok(out);
                }
                line.clear();
                let n = r
                    .read_until(b'\n', &mut line)
                    .map_err(|e| io_err("cannot read", &path, e))?;
                if n == 0 {
                    break;
                }
                offset += n as u64;
                let Some((position, time_ms, id_str, json)) = parse_line(&line) else {
                    // Only this process writes the spool, and it was checked on open.
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "damaged SIEM spool line in {} before offset {offset}",
                            path.display()
                        ),
                    ));
                };
                bytes += json.len();
                out.push(Item {
                    segment: id,
                    end: offset,
                    position,
                    time_ms,
                    id: id_str.to_owned(),
                    json: json.to_owned(),
                });
            }
        }
        Ok(out)
    }

    /// Records that everything up to `item` (inclusive) was delivered: persists the cursor
    /// and removes the segments before it.
    pub fn acknowledge(&self, item: &Item, count: u64) -> std::io::Result<()> {
        let mut st = self.lock();
        let cursor = Cursor {
            segment: item.segment,
            offset: item.end,
            position: item.position,
            delivered: st.ack.delivered + count,
        };
        let path = self.dir.join("cursor.json");
        let tmp = self.dir.join("cursor.json.tmp");
        let body = serde_json::to_vec(&cursor).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body).map_err(|e| io_err("cannot write", &tmp, e))?;
        // A rename survives a crash of the process; a power cut may lose it, which only
        // sends the batch again.
        std::fs::rename(&tmp, &path).map_err(|e| io_err("cannot replace", &path, e))?;
        st.ack = cursor;
        let old: Vec<u64> = st
            .segments
            .range(..item.segment)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            let p = segment_path(&self.dir, id);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(io_err("cannot remove", &p, e));
            }
            st.segments.remove(&id);
        }
        Ok(())
    }

    /// Appends refused events to the dead-letter file (kept below the spool bound by
    /// rotating it to `dead-letters.ndjson.1`).
    pub fn dead_letter(&self, lines: &str) -> std::io::Result<()> {
        let _st = self.lock();
        let path = self.dir.join("dead-letters.ndjson");
        if std::fs::metadata(&path).is_ok_and(|m| m.len() + lines.len() as u64 > self.max_bytes) {
            let old = self.dir.join("dead-letters.ndjson.1");
            std::fs::rename(&path, &old).map_err(|e| io_err("cannot rotate", &path, e))?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err("cannot open", &path, e))?;
        f.write_all(lines.as_bytes())
            .map_err(|e| io_err("cannot write", &path, e))?;
        f.sync_data().map_err(|e| io_err("cannot sync", &path, e))
    }
}

/// The length of the valid prefix of a segment and the position of its last valid line.
fn scan(path: &Path) -> std::io::Result<(u64, Option<Position>)> {
    let f = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut good = 0u64;
    let mut last = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| io_err("cannot read", path, e))?;
        if n == 0 {
            return Ok((good, last));
        }
        match parse_line(&line) {
            Some((p, ..)) => {
                good += n as u64;
                last = Some(p);
            }
            None => return Ok((good, last)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u64) -> Event {
        Event {
            id: format!("1d{i}"),
            time_ms: 1000 + i,
            json: format!("{{\"n\":{i}}}"),
        }
    }

    fn pos(i: u64) -> Position {
        Position {
            leaf: i + 1,
            anchor: 0,
            checkpoint: 0,
        }
    }

    fn fill(spool: &Spool, range: std::ops::Range<u64>) {
        let mut lines = String::new();
        for i in range.clone() {
            lines.push_str(&Spool::line(&ev(i), pos(i)));
        }
        spool.append(&lines, pos(range.end - 1)).unwrap();
    }

    #[test]
    fn items_resume_from_the_cursor_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.head(), Position::default());
        fill(&spool, 0..10);
        let items = spool.read((0, 0), 4, usize::MAX).unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[3].json, "{\"n\":3}");
        spool.acknowledge(&items[3], 4).unwrap();
        let used = spool.bytes();
        drop(spool);

        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.head(), pos(9));
        assert_eq!(spool.bytes(), used);
        let ack = spool.acknowledged();
        assert_eq!((ack.position, ack.delivered), (pos(3), 4));
        let rest = spool
            .read((ack.segment, ack.offset), 100, usize::MAX)
            .unwrap();
        let ids: Vec<_> = rest.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["1d4", "1d5", "1d6", "1d7", "1d8", "1d9"]);
        assert_eq!(rest[0].time_ms, 1004);
        // The byte bound cuts a read, but never below one item.
        assert_eq!(
            spool.read((ack.segment, ack.offset), 100, 1).unwrap().len(),
            1
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_head_goes_back_to_the_last_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        fill(&spool, 0..5);
        drop(spool);
        let seg = segment_path(dir.path(), 0);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"6 0 0 1006 1d6 {\"n\":").unwrap();
        drop(f);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.head(), pos(4));
        assert_eq!(spool.read((0, 0), 100, usize::MAX).unwrap().len(), 5);
        fill(&spool, 5..6);
        let all = spool.read((0, 0), 100, usize::MAX).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[5].id, "1d5");
    }

    #[test]
    fn the_bound_is_reported_and_acknowledged_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 600).unwrap();
        assert!(spool.has_room(600));
        fill(&spool, 0..30);
        assert!(spool.bytes() > 600);
        assert!(!spool.has_room(1));
        let items = spool.read((0, 0), 100, usize::MAX).unwrap();
        spool.acknowledge(items.last().unwrap(), 30).unwrap();
        assert_eq!(spool.bytes(), 0);
        assert!(spool.has_room(600));
        spool.dead_letter("{\"x\":1}\n").unwrap();
        assert!(dir.path().join("dead-letters.ndjson").exists());
    }
}
