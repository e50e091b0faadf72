//! What an upload holds, worked out from the names of its objects alone, and
//! how its bytes become the parts of the final multipart upload. Pure
//! functions: the store lists, these decide.
//!
//! Every writer session (one `upload_writer` call) gets a generation number,
//! one above the highest listed, and first stores a marker `s-<gen>-<base>`
//! saying it writes from byte `base`. Its bytes go to chunk objects
//! `c-<gen>-<start>-<end>`. A session's bytes count only from its base up to
//! the base of any later session: a later session at `base` discards
//! everything earlier sessions stored past `base`. So a rewind needs no
//! rewrite of the chunk straddling it, and a chunk PUT of a dead writer that
//! lands late (after its successor started) is masked, never mixed in.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Session { gen: u32, base: u64 },
    Chunk { gen: u32, start: u64, end: u64 },
}

// Fixed widths, so listings sort in upload order for a human reading them.
pub fn session_name(gen: u32, base: u64) -> String {
    format!("s-{gen:010}-{base:020}")
}

pub fn chunk_name(gen: u32, start: u64, end: u64) -> String {
    format!("c-{gen:010}-{start:020}-{end:020}")
}

pub fn parse(name: &str) -> Option<Entry> {
    let mut fields = name.split('-');
    let kind = fields.next()?;
    let gen = fields.next()?.parse().ok()?;
    let a = fields.next()?.parse().ok()?;
    let entry = match (kind, fields.next()) {
        ("s", None) => Entry::Session { gen, base: a },
        ("c", Some(b)) => {
            let end = b.parse().ok()?;
            if end <= a {
                return None;
            }
            Entry::Chunk { gen, start: a, end }
        }
        _ => return None,
    };
    fields.next().is_none().then_some(entry)
}

/// `len` bytes of the upload from byte `start`, found at `offset` in the
/// chunk object `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub name: String,
    pub offset: u64,
    pub start: u64,
    pub len: u64,
}

impl Piece {
    fn split(&self, at: u64) -> (Piece, Piece) {
        let head = Piece {
            len: at,
            ..self.clone()
        };
        let tail = Piece {
            name: self.name.clone(),
            offset: self.offset + at,
            start: self.start + at,
            len: self.len - at,
        };
        (head, tail)
    }
}

#[derive(Debug, Default)]
pub struct Layout {
    /// Some session was ever opened (and the upload not removed).
    pub exists: bool,
    /// The generation for the next session.
    pub next_gen: u32,
    /// The upload's bytes in order, contiguous from 0.
    pub pieces: Vec<Piece>,
    /// How many bytes the upload holds: the end of `pieces`.
    pub covered: u64,
    /// Objects that can no longer contribute a byte.
    pub garbage: Vec<String>,
}

impl Layout {
    /// The pieces holding the upload's first `size` bytes (`size <= covered`).
    pub fn prefix(&self, size: u64) -> Vec<Piece> {
        let mut out = Vec::new();
        for p in &self.pieces {
            if p.start >= size {
                break;
            }
            let keep = p.len.min(size - p.start);
            out.push(p.split(keep).0);
        }
        out
    }
}

/// Works out the upload from the names of its objects (relative to its
/// directory); names that are not ours are left alone.
pub fn layout(names: &[String]) -> Layout {
    let mut sessions: BTreeMap<u32, u64> = BTreeMap::new();
    let mut session_names: Vec<(u32, u64, &String)> = Vec::new();
    let mut chunks: Vec<(u32, u64, u64, &String)> = Vec::new();
    for name in names {
        match parse(name) {
            Some(Entry::Session { gen, base }) => {
                // Two sessions of one generation only arise from a writer
                // racing past the registry's claim; the lower base discards
                // more, the safe reading.
                let b = sessions.entry(gen).or_insert(base);
                *b = (*b).min(base);
                session_names.push((gen, base, name));
            }
            Some(Entry::Chunk { gen, start, end }) => chunks.push((gen, start, end, name)),
            None => {}
        }
    }
    // limit[gen]: the lowest base of any later session.
    let mut limits: BTreeMap<u32, u64> = BTreeMap::new();
    let mut lowest = u64::MAX;
    for (&gen, &base) in sessions.iter().rev() {
        limits.insert(gen, lowest);
        lowest = lowest.min(base);
    }

    let mut layout = Layout {
        exists: !sessions.is_empty(),
        next_gen: sessions
            .keys()
            .next_back()
            .map_or(1, |g| g.saturating_add(1)),
        ..Layout::default()
    };
    let mut valid = Vec::new();
    for (gen, start, end, name) in chunks {
        let window = sessions.get(&gen).zip(limits.get(&gen));
        match window {
            Some((&base, &limit)) if start.max(base) < end.min(limit) => {
                let from = start.max(base);
                valid.push(Piece {
                    name: name.clone(),
                    offset: from - start,
                    start: from,
                    len: end.min(limit) - from,
                });
            }
            _ => layout.garbage.push(name.clone()),
        }
    }
    valid.sort_by_key(|p| (p.start, std::cmp::Reverse(p.len)));
    for p in valid {
        // Past a gap nothing is reachable: any later session starts at or
        // below `covered` and so discards it.
        if p.start == layout.covered {
            layout.covered += p.len;
            layout.pieces.push(p);
        } else {
            layout.garbage.push(p.name);
        }
    }

    let used: std::collections::BTreeSet<u32> = layout
        .pieces
        .iter()
        .filter_map(|p| match parse(&p.name) {
            Some(Entry::Chunk { gen, .. }) => Some(gen),
            _ => None,
        })
        .collect();
    for (gen, base, name) in session_names {
        // A session that supplies no byte may go once a later one starts at
        // or below its base: that one discards at least as much.
        let superseded = limits.get(&gen).is_some_and(|&limit| limit <= base);
        if superseded && !used.contains(&gen) {
            layout.garbage.push(name.clone());
        }
    }
    layout
}

/// One part of the final multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Copied inside the store (UploadPartCopy) from one chunk object.
    Copy(Piece),
    /// Small pieces read back and uploaded together.
    Upload(Vec<Piece>),
}

#[cfg(test)]
impl Part {
    pub fn len(&self) -> u64 {
        match self {
            Part::Copy(p) => p.len,
            Part::Upload(ps) => ps.iter().map(|p| p.len).sum(),
        }
    }
}

/// Turns `pieces` into parts of at least `min` bytes (but the last): a piece
/// of `min` or more is copied inside the store; smaller ones are gathered,
/// up to `target`, and uploaded, topped up from the next piece when it is too
/// large to take whole. Bytes through berth stay below `min` per small
/// piece, and memory below `target` per part.
pub fn plan(pieces: &[Piece], min: u64, target: u64) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut pending: Vec<Piece> = Vec::new();
    let mut pending_len = 0;
    let flush = |parts: &mut Vec<Part>, pending: &mut Vec<Piece>, len: &mut u64| {
        if !pending.is_empty() {
            parts.push(Part::Upload(std::mem::take(pending)));
            *len = 0;
        }
    };
    for piece in pieces {
        let mut p = piece.clone();
        while p.len > 0 {
            if pending_len == 0 {
                if p.len >= min {
                    parts.push(Part::Copy(p));
                } else {
                    pending_len = p.len;
                    pending.push(p);
                }
                break;
            }
            if pending_len + p.len <= target {
                pending_len += p.len;
                pending.push(p);
                if pending_len == target {
                    flush(&mut parts, &mut pending, &mut pending_len);
                }
                break;
            }
            if pending_len >= min {
                flush(&mut parts, &mut pending, &mut pending_len);
                continue;
            }
            let (head, tail) = p.split(min - pending_len);
            pending.push(head);
            flush(&mut parts, &mut pending, &mut pending_len);
            p = tail;
        }
    }
    flush(&mut parts, &mut pending, &mut pending_len);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match *e {
                Entry::Session { gen, base } => session_name(gen, base),
                Entry::Chunk { gen, start, end } => chunk_name(gen, start, end),
            })
            .collect()
    }

    fn s(gen: u32, base: u64) -> Entry {
        Entry::Session { gen, base }
    }

    fn c(gen: u32, start: u64, end: u64) -> Entry {
        Entry::Chunk { gen, start, end }
    }

    /// (gen, start, len, offset) of each piece.
    fn shape(l: &Layout) -> Vec<(u32, u64, u64, u64)> {
        l.pieces
            .iter()
            .map(|p| match parse(&p.name) {
                Some(Entry::Chunk { gen, .. }) => (gen, p.start, p.len, p.offset),
                other => panic!("piece from {other:?}"),
            })
            .collect()
    }

    #[test]
    fn names_round_trip() {
        for e in [
            s(1, 0),
            s(7, u64::MAX),
            c(3, 0, 1),
            c(u32::MAX, 5, u64::MAX),
        ] {
            assert_eq!(parse(&names(&[e])[0]), Some(e));
        }
        for bad in [
            "s-1",
            "c-1-5-5",
            "c-1-6-5",
            "x-1-2",
            "s-1-2-3",
            "s-a-1",
            "c-1-2-3-4",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_and_unknown() {
        let l = layout(&[]);
        assert!(!l.exists);
        assert_eq!((l.next_gen, l.covered), (1, 0));
        let l = layout(&["README".to_owned(), chunk_name(1, 0, 10)]);
        assert!(!l.exists, "a chunk without its session");
        assert_eq!(l.covered, 0);
        assert_eq!(l.garbage, vec![chunk_name(1, 0, 10)]);
    }

    #[test]
    fn sessions_append() {
        let l = layout(&names(&[
            s(1, 0),
            c(1, 0, 10),
            c(1, 10, 15),
            s(2, 15),
            c(2, 15, 40),
        ]));
        assert_eq!(
            shape(&l),
            vec![(1, 0, 10, 0), (1, 10, 5, 0), (2, 15, 25, 0)]
        );
        assert_eq!((l.covered, l.next_gen), (40, 3));
        assert!(l.garbage.is_empty());
        assert_eq!(
            l.prefix(12).iter().map(|p| p.len).collect::<Vec<_>>(),
            vec![10, 2]
        );
        assert_eq!(l.prefix(10).len(), 1);
    }

    #[test]
    fn a_later_session_discards_what_lies_past_its_base() {
        // Session 1 wrote 0..16; session 2 rewound to 10 and wrote 10..12;
        // a chunk of session 1 landed late at 16..32.
        let l = layout(&names(&[
            s(1, 0),
            c(1, 0, 16),
            c(1, 16, 32),
            s(2, 10),
            c(2, 10, 12),
        ]));
        assert_eq!(shape(&l), vec![(1, 0, 10, 0), (2, 10, 2, 0)]);
        assert_eq!(l.covered, 12);
        assert_eq!(l.garbage, vec![chunk_name(1, 16, 32)]);

        // A rewind without writes cuts too, and its marker must stay.
        let l = layout(&names(&[s(1, 0), c(1, 0, 800), s(2, 300)]));
        assert_eq!((l.covered, l.garbage.len()), (300, 0));

        // Rewinding to the same place twice: the first, empty session goes.
        let l = layout(&names(&[
            s(1, 0),
            c(1, 0, 800),
            s(2, 300),
            s(3, 300),
            c(3, 300, 400),
        ]));
        assert_eq!(l.covered, 400);
        assert_eq!(l.garbage, vec![session_name(2, 300)]);

        // A restart from 0 discards everything before it.
        let l = layout(&names(&[s(1, 0), c(1, 0, 8), s(2, 8), c(2, 8, 9), s(3, 0)]));
        assert_eq!(l.covered, 0);
        let mut g = l.garbage.clone();
        g.sort();
        let mut want = names(&[c(1, 0, 8), c(2, 8, 9), s(1, 0), s(2, 8)]);
        want.sort();
        assert_eq!(g, want);
    }

    #[test]
    fn a_late_chunk_of_a_dead_writer_is_masked() {
        // Session 1 died mid-way at 0; session 2 restarted at 0 and wrote
        // 0..5; session 1's PUT of 0..16 landed afterwards.
        let l = layout(&names(&[s(1, 0), s(2, 0), c(2, 0, 5), c(1, 0, 16)]));
        assert_eq!(shape(&l), vec![(2, 0, 5, 0)]);
        assert!(l.garbage.contains(&chunk_name(1, 0, 16)));
        assert!(l.garbage.contains(&session_name(1, 0)));
    }

    #[test]
    fn a_gap_ends_the_upload() {
        let l = layout(&names(&[s(1, 0), c(1, 0, 10), s(2, 10), c(2, 12, 20)]));
        assert_eq!(l.covered, 10);
        assert_eq!(l.garbage, vec![chunk_name(2, 12, 20)]);
    }

    fn pieces(lens: &[u64]) -> Vec<Piece> {
        let mut start = 0;
        lens.iter()
            .enumerate()
            .map(|(i, &len)| {
                let p = Piece {
                    name: format!("p{i}"),
                    offset: 3,
                    start,
                    len,
                };
                start += len;
                p
            })
            .collect()
    }

    /// The plan covers the pieces exactly, in order, and only the last part
    /// is under `min`; no uploaded part exceeds `target`.
    fn check(lens: &[u64], min: u64, target: u64) -> Vec<Part> {
        let input = pieces(lens);
        let parts = plan(&input, min, target);
        let mut pos = 0;
        for (i, part) in parts.iter().enumerate() {
            if i + 1 < parts.len() {
                assert!(part.len() >= min, "{lens:?}: part {i} of {}", part.len());
            }
            let ps = match part {
                Part::Copy(p) => {
                    assert!(p.len >= min);
                    vec![p.clone()]
                }
                Part::Upload(ps) => {
                    assert!(part.len() <= target, "{lens:?}: upload part {i}");
                    ps.clone()
                }
            };
            for p in ps {
                assert_eq!(p.start, pos, "{lens:?}: contiguous");
                let src = input.iter().find(|q| q.name == p.name).unwrap();
                assert_eq!(p.offset - src.offset, p.start - src.start, "object offset");
                assert!(p.start + p.len <= src.start + src.len);
                pos += p.len;
            }
        }
        assert_eq!(pos, lens.iter().sum::<u64>());
        parts
    }

    #[test]
    fn plans() {
        let kinds = |parts: &[Part]| -> String {
            parts
                .iter()
                .map(|p| match p {
                    Part::Copy(_) => 'C',
                    Part::Upload(_) => 'U',
                })
                .collect()
        };
        assert_eq!(kinds(&check(&[16, 16, 3], 5, 16)), "CCU");
        assert_eq!(kinds(&check(&[3, 7, 1, 12, 16, 1], 5, 16)), "UCCU");
        assert_eq!(kinds(&check(&[1, 1, 1], 5, 16)), "U");
        assert_eq!(kinds(&check(&[4, 4, 4, 4, 4], 5, 16)), "UU");
        assert!(check(&[], 5, 16).is_empty());
        // Pseudo-random sizes around the thresholds.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..500 {
            let lens: Vec<u64> = (0..(x % 12 + 1))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % 20 + 1
                })
                .collect();
            check(&lens, 5, 16);
            check(&lens, 5, 5);
        }
    }
}
