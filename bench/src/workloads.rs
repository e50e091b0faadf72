//! What is measured: the workloads, the blobs they push, and the tags and
//! repositories the listings list.

use crate::oci::{self, check, list_page, listed, Blob, Endpoint};
use crate::stats::{hammer, share_out};
use crate::token::Scope;
use crate::{Res, MIB};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One workload of the table, in the table's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    PushMonolithic,
    PushChunked,
    PullBig,
    PushLayers,
    PullLayers,
    ManifestGet,
    ManifestHead,
    TagsList,
    Catalog,
}

impl Workload {
    pub const ALL: [Workload; 9] = [
        Workload::PushMonolithic,
        Workload::PushChunked,
        Workload::PullBig,
        Workload::PushLayers,
        Workload::PullLayers,
        Workload::ManifestGet,
        Workload::ManifestHead,
        Workload::TagsList,
        Workload::Catalog,
    ];

    /// Its name in the table and results.json (the big blob is 256 MiB
    /// with `--quick`, still named "1 GiB").
    pub fn name(self) -> &'static str {
        match self {
            Workload::PushMonolithic => "push 1 GiB, monolithic PUT (MB/s)",
            Workload::PushChunked => "push 1 GiB, chunked PATCH (MB/s)",
            Workload::PullBig => "pull 1 GiB (MB/s)",
            Workload::PushLayers => "push 200 layers of 4 MiB, 16 clients (layers/s)",
            Workload::PullLayers => "pull 200 layers, 16 clients (MB/s)",
            Workload::ManifestGet => "manifest GET by tag, 64 connections (req/s)",
            Workload::ManifestHead => "manifest HEAD by digest, 64 connections (req/s)",
            Workload::TagsList => "tags list of 10,000 tags (lists/s)",
            Workload::Catalog => "catalog of 10,000 repositories, pages of 1000 (catalogs/s)",
        }
    }

    /// The workload that pushes what this one pulls (in the same round).
    fn needs(self) -> Option<Workload> {
        match self {
            Workload::PullBig => Some(Workload::PushMonolithic),
            Workload::PullLayers => Some(Workload::PushLayers),
            _ => None,
        }
    }

    /// Whether berth in cluster mode runs it too.
    pub fn in_cluster(self) -> bool {
        matches!(
            self,
            Workload::PushMonolithic
                | Workload::PushChunked
                | Workload::PushLayers
                | Workload::ManifestGet
                | Workload::ManifestHead
        )
    }

    /// Whether it lists what [`Workloads::populate`] makes.
    pub fn lists(self) -> bool {
        matches!(self, Workload::TagsList | Workload::Catalog)
    }

    /// The workloads to run, in order: all, or with `--only TEXT` those
    /// whose name contains TEXT and the pushes their pulls need.
    pub fn selected(only: Option<&str>) -> Vec<Workload> {
        let Some(only) = only else {
            return Workload::ALL.to_vec();
        };
        let chosen: Vec<Workload> = Workload::ALL
            .into_iter()
            .filter(|w| w.name().contains(only))
            .collect();
        Workload::ALL
            .into_iter()
            .filter(|w| chosen.contains(w) || chosen.iter().any(|c| c.needs() == Some(*w)))
            .collect()
    }
}

/// What one workload measured on one server: value, and p99 when relevant.
pub type Measure = (f64, Option<f64>);

/// The workloads' data: the big blob and the 200 layers.
pub struct Workloads {
    quick: bool,
    big: Blob,
    pub layers: Vec<Blob>,
}

impl Workloads {
    /// The blobs: 1 GiB (256 MiB with `quick`) and 200 of 4 MiB.
    pub fn new(quick: bool) -> Workloads {
        let big = if quick { 256 * MIB } else { 1024 * MIB };
        Workloads {
            quick,
            big: Blob::new(7, big),
            layers: (0..200).map(|i| Blob::new(1000 + i, 4 * MIB)).collect(),
        }
    }

    pub fn big_len(&self) -> usize {
        self.big.len
    }

    /// Runs `workload` on `s` (round `round` names its repositories).
    pub async fn run(&self, workload: Workload, s: &Endpoint, round: usize) -> Res<Measure> {
        let c = oci::client();
        let mb = |bytes: usize, t: Instant| bytes as f64 / 1e6 / t.elapsed().as_secs_f64();
        match workload {
            Workload::PushMonolithic => {
                let t = Instant::now();
                oci::push_monolithic(s, &c, &format!("big/mono{round}"), &self.big).await?;
                Ok((mb(self.big_len(), t), None))
            }
            Workload::PushChunked => {
                let t = Instant::now();
                let repo = format!("big/chunk{round}");
                oci::push_chunked(s, &c, &repo, &self.big, 64 * MIB).await?;
                Ok((mb(self.big_len(), t), None))
            }
            Workload::PullBig => {
                // Three pulls in a row: one lasts a third of a second here,
                // and single ones moved by a quarter from round to round.
                let t = Instant::now();
                let repo = format!("big/mono{round}");
                let mut n = 0;
                for _ in 0..3 {
                    n += oci::pull(s, &c, &repo, &self.big.digest).await?;
                }
                Ok((mb(n, t), None))
            }
            Workload::PushLayers => {
                let t = Instant::now();
                let repo = format!("layers/r{round}");
                let shared = Arc::new((s.clone(), c, repo, self.layers.clone()));
                share_out(16, self.layers.len(), shared, |shared, i| async move {
                    let (s, c, repo, layers) = &*shared;
                    oci::push_chunked(s, c, repo, &layers[i], layers[i].len).await?;
                    Ok(0)
                })
                .await?;
                Ok((self.layers.len() as f64 / t.elapsed().as_secs_f64(), None))
            }
            Workload::PullLayers => {
                let t = Instant::now();
                let repo = format!("layers/r{round}");
                let digests: Vec<String> = self.layers.iter().map(|l| l.digest.clone()).collect();
                let shared = Arc::new((s.clone(), c, repo, digests));
                let total = share_out(16, self.layers.len(), shared, |shared, i| async move {
                    let (s, c, repo, digests) = &*shared;
                    oci::pull(s, c, repo, &digests[i]).await
                })
                .await?;
                Ok((mb(total, t), None))
            }
            Workload::ManifestGet | Workload::ManifestHead => {
                let config = format!("{{\"round\":{round}}}").into_bytes();
                let repo = format!("man/r{round}");
                oci::upload_small(s, &c, &repo, &config).await?;
                let body = oci::manifest(&config, &[]);
                oci::put_manifest(s, &c, &repo, "latest", &body).await?;
                let (method, reference) = if workload == Workload::ManifestGet {
                    (reqwest::Method::GET, "latest".to_owned())
                } else {
                    (reqwest::Method::HEAD, oci::sha(&body))
                };
                let url = format!("{}/v2/{repo}/manifests/{reference}", s.base);
                // What each request needs, shared rather than copied.
                let shared = Arc::new((s.clone(), c, url, repo, method));
                let secs = if self.quick { 2.0 } else { 5.0 };
                let (rps, p99) = hammer(64, secs, move || {
                    let shared = shared.clone();
                    async move {
                        let (s, c, url, repo, method) = &*shared;
                        let r = s
                            .req(c, method.clone(), url, Scope::Pull(repo))
                            .await?
                            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        let r = check(r, 200, "manifest").await?;
                        r.bytes().await.map_err(|e| e.to_string())?;
                        Ok(())
                    }
                })
                .await?;
                Ok((rps, Some(p99)))
            }
            Workload::TagsList => {
                let repo = "many/tags";
                let url = format!("/v2/{repo}/tags/list?n=100000");
                let t = Instant::now();
                let mut n = 0;
                while t.elapsed() < Duration::from_secs(if self.quick { 2 } else { 4 }) {
                    let (body, _) = list_page(s, &c, &url, Scope::Pull(repo), "tags list").await?;
                    let count = listed(&body, "tags")?;
                    if count < self.tag_count() {
                        return Err(format!("tags list had {count} tags"));
                    }
                    n += 1;
                }
                Ok((n as f64 / t.elapsed().as_secs_f64(), None))
            }
            Workload::Catalog => {
                let t = Instant::now();
                let mut n = 0;
                while t.elapsed() < Duration::from_secs(if self.quick { 2 } else { 4 }) {
                    let mut url = format!("{}/v2/_catalog?n=1000", s.base);
                    let mut count = 0;
                    loop {
                        let (body, next) =
                            list_page(s, &c, &url, Scope::Catalog, "catalog").await?;
                        count += listed(&body, "repositories")?;
                        match next {
                            Some(next) => url = next,
                            None => break,
                        }
                    }
                    if count < self.repo_count() {
                        return Err(format!("catalog had {count} repositories"));
                    }
                    n += 1;
                }
                Ok((n as f64 / t.elapsed().as_secs_f64(), None))
            }
        }
    }

    fn tag_count(&self) -> usize {
        if self.quick {
            1000
        } else {
            10_000
        }
    }

    fn repo_count(&self) -> usize {
        if self.quick {
            1000
        } else {
            10_000
        }
    }

    /// Fills a repository with many tags and the catalog with many
    /// repositories (not timed).
    pub async fn populate(&self, s: &Endpoint) -> Res<()> {
        let c = oci::client();
        let config = b"{\"populate\":true}".to_vec();
        oci::upload_small(s, &c, "many/tags", &config).await?;
        let body = oci::manifest(&config, &[]);
        let digest = oci::sha(&config);
        let (tags, repos) = (self.tag_count(), self.repo_count());
        let shared = Arc::new((s.clone(), c, body, digest));
        share_out(16, tags + repos, shared, move |shared, i| async move {
            let (s, c, body, digest) = &*shared;
            if i < tags {
                oci::put_manifest(s, c, "many/tags", &format!("t{i}"), body).await?;
            } else {
                let repo = format!("catalog/r{:05}", i - tags);
                oci::mount(s, c, &repo, "many/tags", digest).await?;
                oci::put_manifest(s, c, &repo, "latest", body).await?;
            }
            Ok(0)
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Workload::{self, *};

    #[test]
    fn only_selects_by_name_with_the_pushes_pulls_need() {
        assert_eq!(Workload::selected(None), Workload::ALL);
        assert_eq!(
            Workload::selected(Some("manifest")),
            [ManifestGet, ManifestHead]
        );
        assert_eq!(
            Workload::selected(Some("pull 1")),
            [PushMonolithic, PullBig]
        );
        assert_eq!(
            Workload::selected(Some("pull")),
            [PushMonolithic, PullBig, PushLayers, PullLayers]
        );
        assert_eq!(
            Workload::selected(Some("push")),
            [PushMonolithic, PushChunked, PushLayers]
        );
        assert!(Workload::selected(Some("nothing")).is_empty());
    }
}
