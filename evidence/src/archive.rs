//! The archive: S3-compatible object storage holding one signed bundle per ended run, at
//! `PREFIX/NAMESPACE/RUN/UID.bundle.json` of one bucket (docs/evidence.md, "Archive").
//!
//! The client is Apache Arrow's `object_store` (SigV4, path-style requests, so MinIO, Ceph RGW
//! and s3s work as AWS does). Credentials come from the standard AWS variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`), read by
//! `object_store`'s `AmazonS3Builder::from_env`.

use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// Suffix of every bundle object.
pub const SUFFIX: &str = ".bundle.json";

/// Where the archive is.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ArchiveConfig {
    /// `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    pub url: String,
    /// The S3 endpoint, e.g. `https://minio.example:9000`; `None`: AWS for the region.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` when unset).
    pub region: Option<String>,
    /// Whether a plain `http://` endpoint is allowed (test stores; never for real evidence
    /// over a network you do not control).
    pub allow_http: bool,
}

/// Errors of the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The URL is not `s3://BUCKET[/PREFIX]`.
    #[error("archive URL {0:?} is not s3://BUCKET[/PREFIX]")]
    BadUrl(String),
    /// The object store failed or refused (down, bad credentials, no such bucket).
    #[error("object store {url}: {source}")]
    Store {
        /// The archive URL.
        url: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// No bundle of that run in the archive.
    #[error("no archived bundle of run {namespace}/{name} under {url}")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Run name.
        name: String,
        /// The archive URL.
        url: String,
    },
}

impl ArchiveConfig {
    /// (bucket, prefix without slashes at either end) of [`Self::url`].
    ///
    /// # Errors
    /// [`ArchiveError::BadUrl`].
    pub fn bucket_and_prefix(&self) -> Result<(String, String), ArchiveError> {
        let rest = self
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| ArchiveError::BadUrl(self.url.clone()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains(char::is_whitespace) {
            return Err(ArchiveError::BadUrl(self.url.clone()));
        }
        Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
    }
}

/// One archived bundle, as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchivedBundle {
    /// The run's namespace.
    pub namespace: String,
    /// The run's name.
    pub name: String,
    /// The run's UID.
    pub uid: String,
    /// When the object was written (RFC 3339).
    pub archived_at: String,
    /// The object's size in bytes.
    pub size: u64,
    /// The object's URL (`s3://…`).
    pub url: String,
}

/// A connected archive.
#[derive(Clone, Debug)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    url: String,
}

impl Archive {
    /// A client for `cfg`. Requests time out after 30 s (connect 5 s) and are retried at most
    /// twice within 10 s: a store that is down fails fast, and the operator retries later with
    /// its own backoff.
    ///
    /// # Errors
    /// [`ArchiveError::BadUrl`], or a configuration the client refuses.
    pub fn new(cfg: &ArchiveConfig) -> Result<Self, ArchiveError> {
        let (bucket, prefix) = cfg.bucket_and_prefix()?;
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_region(cfg.region.clone().unwrap_or_else(|| "us-east-1".into()))
            .with_allow_http(cfg.allow_http)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(Duration::from_secs(30))
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_allow_http(cfg.allow_http),
            )
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..Default::default()
            });
        if let Some(e) = cfg.endpoint.as_deref().filter(|e| !e.is_empty()) {
            b = b.with_endpoint(e);
        }
        let store = b.build().map_err(|source| ArchiveError::Store {
            url: cfg.url.clone(),
            source,
        })?;
        Ok(Self {
            store: Arc::new(store),
            bucket,
            prefix,
            url: cfg.url.clone(),
        })
    }

    /// The archive's URL, as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, parts: &[&str]) -> Path {
        let mut all: Vec<&str> = self.prefix.split('/').filter(|p| !p.is_empty()).collect();
        all.extend(parts.iter().copied().filter(|p| !p.is_empty()));
        Path::from_iter(all)
    }

    /// The `s3://` URL of the object at `path`.
    fn object_url(&self, path: &Path) -> String {
        format!("s3://{}/{}", self.bucket, path)
    }

    fn err(&self) -> impl FnOnce(object_store::Error) -> ArchiveError + '_ {
        move |source| ArchiveError::Store {
            url: self.url.clone(),
            source,
        }
    }

    /// Writes the bundle of run `namespace/name` (UID `uid`) unless one is there already: a
    /// conditional create (`If-None-Match: *`), so a run's first archived bundle is never
    /// replaced (a retry after a lost status write finds it). Returns the object's URL and the
    /// `sha256:<hex>` digest of the object as stored (the existing one's, when there was one).
    ///
    /// # Errors
    /// [`ArchiveError::Store`].
    pub async fn put(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        bytes: Vec<u8>,
    ) -> Result<(String, String), ArchiveError> {
        let file = format!("{uid}{SUFFIX}");
        let path = self.path(&[namespace, name, &file]);
        let digest = crate::dsse::sha256_digest(&bytes);
        let opts = object_store::PutOptions::from(object_store::PutMode::Create);
        match self.store.put_opts(&path, PutPayload::from(bytes), opts).await {
            Ok(_) => Ok((self.object_url(&path), digest)),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                let existing = self.get(namespace, name, uid).await?;
                Ok((self.object_url(&path), crate::dsse::sha256_digest(&existing)))
            }
            Err(source) => Err(ArchiveError::Store {
                url: self.url.clone(),
                source,
            }),
        }
    }

    /// Lists archived bundles, of one namespace or all, oldest first.
    ///
    /// # Errors
    /// [`ArchiveError::Store`].
    pub async fn list(&self, namespace: Option<&str>) -> Result<Vec<ArchivedBundle>, ArchiveError> {
        let base = self.path(&[namespace.unwrap_or("")]);
        let depth = self.path(&[]).parts().count();
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&base)).try_collect().await.map_err(self.err())?;
        let mut out: Vec<ArchivedBundle> = metas
            .into_iter()
            .filter_map(|m| {
                let parts: Vec<String> = m.location.parts().map(|p| p.as_ref().to_string()).collect();
                let [ns, name, file] = parts.get(depth..)? else {
                    return None;
                };
                let uid = file.strip_suffix(SUFFIX)?;
                Some(ArchivedBundle {
                    namespace: ns.clone(),
                    name: name.clone(),
                    uid: uid.to_string(),
                    archived_at: m.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    size: m.size,
                    url: self.object_url(&m.location),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.archived_at, &a.namespace, &a.name).cmp(&(&b.archived_at, &b.namespace, &b.name)));
        Ok(out)
    }

    /// The newest archived bundle of run `namespace/name` (a name reused by later runs has one
    /// object per UID): its listing and its bytes.
    ///
    /// # Errors
    /// [`ArchiveError::NotFound`], [`ArchiveError::Store`].
    pub async fn latest(&self, namespace: &str, name: &str) -> Result<(ArchivedBundle, Vec<u8>), ArchiveError> {
        let all = self.list(Some(namespace)).await?;
        let found = all
            .into_iter()
            .rfind(|b| b.name == name)
            .ok_or_else(|| ArchiveError::NotFound {
                namespace: namespace.into(),
                name: name.into(),
                url: self.url.clone(),
            })?;
        let bytes = self.get(namespace, name, &found.uid).await?;
        Ok((found, bytes))
    }

    /// The bytes of the bundle of run `namespace/name` with UID `uid`.
    ///
    /// # Errors
    /// [`ArchiveError::NotFound`], [`ArchiveError::Store`].
    pub async fn get(&self, namespace: &str, name: &str, uid: &str) -> Result<Vec<u8>, ArchiveError> {
        let file = format!("{uid}{SUFFIX}");
        let path = self.path(&[namespace, name, &file]);
        match self.store.get(&path).await {
            Ok(r) => Ok(r.bytes().await.map_err(self.err())?.to_vec()),
            Err(object_store::Error::NotFound { .. }) => Err(ArchiveError::NotFound {
                namespace: namespace.into(),
                name: name.into(),
                url: self.url.clone(),
            }),
            Err(source) => Err(ArchiveError::Store {
                url: self.url.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_gives_the_bucket_and_a_clean_prefix() {
        let cfg = |url: &str| ArchiveConfig {
            url: url.into(),
            ..Default::default()
        };
        assert_eq!(cfg("s3://b").bucket_and_prefix().unwrap(), ("b".into(), "".into()));
        assert_eq!(
            cfg("s3://b/runs/prod/").bucket_and_prefix().unwrap(),
            ("b".into(), "runs/prod".into())
        );
        assert!(matches!(
            cfg("https://b/x").bucket_and_prefix(),
            Err(ArchiveError::BadUrl(_))
        ));
        assert!(matches!(
            cfg("s3:///x").bucket_and_prefix(),
            Err(ArchiveError::BadUrl(_))
        ));
    }
}
