//! What an import did, counted, with everything it left out and why, and
//! its progress while it runs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of one kind of thing an import met.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Made visible in berth by this run.
    pub imported: u64,
    /// Already there: a previous run (or a push) made it.
    pub present: u64,
    /// Left out because of what the source holds (see the skipped list).
    pub skipped: u64,
    /// Left out because berth could not do its part (a storage or metadata
    /// error): a rerun may succeed.
    pub failed: u64,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.imported + self.present + self.skipped + self.failed
    }
}

/// The outcome of an import.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    /// A repository counts as imported when this run added anything to it.
    pub repositories: Tally,
    pub manifests: Tally,
    pub tags: Tally,
    /// Blob links (a blob in two repositories counts twice).
    pub blobs: Tally,
    /// Of the imported blob links: the bytes were adopted where they lay
    /// (no byte copied), ...
    pub blobs_adopted: u64,
    /// ... were streamed into berth's store and verified, ...
    pub blobs_copied: u64,
    /// ... or were in berth already (a blob another repository has).
    pub blobs_known: u64,
    pub bytes_adopted: u64,
    pub bytes_copied: u64,
    /// Blobs re-hashed and found to match (`verify`).
    pub blobs_verified: u64,
    pub projects_created: Vec<String>,
    /// What was left out, and why: `(what, why)`.
    pub skipped: Vec<(String, String)>,
    /// What failed, and how: `(what, error)`.
    pub failures: Vec<(String, String)>,
}

impl ImportReport {
    /// Whether this run changed nothing: everything was there already (or
    /// is skipped again for the same reasons).
    pub fn nothing_new(&self) -> bool {
        self.repositories.imported == 0
            && self.manifests.imported == 0
            && self.tags.imported == 0
            && self.blobs.imported == 0
            && self.projects_created.is_empty()
    }

    pub(super) fn skip(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.skipped.push((what.into(), why.into()));
    }

    pub(super) fn fail(&mut self, what: impl Into<String>, error: impl Into<String>) {
        self.failures.push((what.into(), error.into()));
    }
}

/// Bytes in the largest binary unit that keeps a whole number in front.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn tally(f: &mut fmt::Formatter<'_>, name: &str, t: &Tally) -> fmt::Result {
    write!(
        f,
        "{name:<14}{} imported, {} already present, {} skipped",
        t.imported, t.present, t.skipped
    )?;
    if t.failed > 0 {
        write!(f, ", {} FAILED", t.failed)?;
    }
    writeln!(f)
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        tally(f, "repositories:", &self.repositories)?;
        tally(f, "manifests:", &self.manifests)?;
        tally(f, "tags:", &self.tags)?;
        tally(f, "blobs:", &self.blobs)?;
        writeln!(
            f,
            "  of the imported blobs: {} adopted in place ({}), {} copied ({}), {} already in berth's store",
            self.blobs_adopted,
            human_bytes(self.bytes_adopted),
            self.blobs_copied,
            human_bytes(self.bytes_copied),
            self.blobs_known,
        )?;
        if self.blobs_verified > 0 {
            writeln!(f, "  re-hashed and verified: {}", self.blobs_verified)?;
        }
        if !self.projects_created.is_empty() {
            writeln!(f, "projects created: {}", self.projects_created.join(", "))?;
        }
        if self.skipped.is_empty() {
            writeln!(f, "skipped: nothing")?;
        } else {
            writeln!(f, "skipped ({}):", self.skipped.len())?;
            for (what, why) in &self.skipped {
                writeln!(f, "  {what}: {why}")?;
            }
        }
        if !self.failures.is_empty() {
            writeln!(f, "FAILED ({}), run the import again:", self.failures.len())?;
            for (what, error) in &self.failures {
                writeln!(f, "  {what}: {error}")?;
            }
        }
        Ok(())
    }
}

/// Done and total of one kind, updated as an import goes.
#[derive(Debug, Default)]
pub struct Counter {
    done: AtomicU64,
    total: AtomicU64,
}

impl Counter {
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(super) fn add_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }
}

/// An import's progress, read by whoever shows it (the CLI prints it to
/// standard error) while the import runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub repositories: Counter,
    pub manifests: Counter,
    pub blobs: Counter,
    /// Bytes streamed into the store so far.
    pub bytes_copied: AtomicU64,
}

impl Progress {
    /// One line: `repositories 2/5, manifests 120/400, blobs 300/900, 1.2 GiB copied`.
    pub fn line(&self) -> String {
        format!(
            "repositories {}/{}, manifests {}/{}, blobs {}/{}, {} copied",
            self.repositories.done(),
            self.repositories.total(),
            self.manifests.done(),
            self.manifests.total(),
            self.blobs.done(),
            self.blobs.total(),
            human_bytes(self.bytes_copied.load(Ordering::Relaxed)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1536, "1.5 KiB"),
            (3 * 1024 * 1024 * 1024, "3.0 GiB"),
        ];
        for (n, shown) in cases {
            assert_eq!(human_bytes(n), shown, "{n} bytes");
        }
    }
}
