//! Dataset locations: a local folder (a plain path or a `file://` URL) or an object-store
//! prefix (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`). First
//! thing the store does with a location the user typed: STORE (url -> ObjectStore) ->
//! shard reader -> plan -> prefetch -> decode/augment -> collate -> gRPC.
//!
//! A URL may carry per-URL overrides of the store configuration as query parameters:
//! `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&allow_http=true&region=eu-west-1`
//! (also `virtual_hosted=true`). Credentials are refused in a URL: URLs end up in logs,
//! errors and `Describe` answers; credentials come from the environment or the config.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a location could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The scheme is not one editfeed reads.
    #[error("{url}: unsupported scheme {scheme:?} (use a path, file://, s3://, gs:// or az://)")]
    Scheme { url: String, scheme: String },
    /// The URL has no bucket or container.
    #[error("{url}: no bucket named (expected {scheme}://BUCKET/PREFIX)")]
    NoBucket { url: String, scheme: String },
    /// A query parameter is unknown, malformed or not allowed.
    #[error("{url}: query parameter {key:?}: {why}")]
    Query {
        url: String,
        key: String,
        why: String,
    },
    /// The prefix has an empty, `.` or `..` segment.
    #[error("{url}: the prefix has an empty, '.' or '..' segment")]
    Prefix { url: String },
}

/// The object stores editfeed can address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Amazon S3 and S3-compatible servers (MinIO, Ceph, moto, R2).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

impl Scheme {
    /// The URL scheme as written (`s3`, `gs`, `az`).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
        }
    }
}

/// Store settings a URL may override for itself (S3 only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlOptions {
    /// `endpoint=`: an S3-compatible endpoint, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// `region=`: the bucket's region.
    pub region: Option<String>,
    /// `allow_http=`: allow a plain-http endpoint.
    pub allow_http: Option<bool>,
    /// `virtual_hosted=`: address buckets as `bucket.endpoint` instead of
    /// `endpoint/bucket`.
    pub virtual_hosted: Option<bool>,
}

/// A bucket prefix in an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// Which store.
    pub scheme: Scheme,
    /// The bucket (S3, GCS) or container (Azure).
    pub bucket: String,
    /// The key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Overrides given in the URL's query.
    pub options: UrlOptions,
}

impl RemoteUrl {
    /// The URL of an object under the prefix (no query; safe to log).
    pub fn object(&self, name: &str) -> String {
        if name.is_empty() {
            return self.to_string();
        }
        if self.prefix.is_empty() {
            format!("{}://{}/{name}", self.scheme.name(), self.bucket)
        } else {
            format!(
                "{}://{}/{}/{name}",
                self.scheme.name(),
                self.bucket,
                self.prefix
            )
        }
    }

    /// The object key of `name` inside the bucket.
    pub fn key(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{name}", self.prefix),
        }
    }
}

impl fmt::Display for RemoteUrl {
    /// `scheme://bucket/prefix`, without the query (no secrets are ever in it, but the
    /// short form reads better in errors).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.name(), self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Where a dataset lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on local disk.
    Local(PathBuf),
    /// A prefix in an object store.
    Remote(RemoteUrl),
}

impl Location {
    /// Parses a path or URL. Anything without `scheme://` is a local path.
    pub fn parse(text: &str) -> Result<Location, UrlError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(text)));
        };
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            // Not a scheme (e.g. `./a://b`): a local path that happens to hold "://".
            return Ok(Location::Local(PathBuf::from(text)));
        }
        let scheme_lc = scheme.to_ascii_lowercase();
        let scheme = match scheme_lc.as_str() {
            "file" => return Ok(Location::Local(PathBuf::from(rest))),
            "s3" | "s3a" => Scheme::S3,
            "gs" | "gcs" => Scheme::Gcs,
            "az" | "azure" | "abfs" => Scheme::Azure,
            _ => {
                return Err(UrlError::Scheme {
                    url: text.to_string(),
                    scheme: scheme_lc,
                })
            }
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(UrlError::NoBucket {
                url: text.to_string(),
                scheme: scheme.name().to_string(),
            });
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(UrlError::Prefix {
                url: text.to_string(),
            });
        }
        let options = match query {
            Some(q) => parse_query(text, scheme, q)?,
            None => UrlOptions::default(),
        };
        Ok(Location::Remote(RemoteUrl {
            scheme,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            options,
        }))
    }

    /// Whether the location is an object store.
    pub fn is_remote(&self) -> bool {
        matches!(self, Location::Remote(_))
    }

    /// The location of a file inside this one, for messages: a path or a URL.
    pub fn display_of(&self, name: &str) -> String {
        match self {
            Location::Local(p) => p.join(name).display().to_string(),
            Location::Remote(u) => u.object(name),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Remote(u) => write!(f, "{u}"),
        }
    }
}

/// Anything that names a dataset location: a URL or path string, a `Path`, or a parsed
/// [`Location`]. Lets `Dataset::open` and `DatasetWriter::create` take either.
pub trait AsLocation {
    /// The parsed location.
    fn as_location(&self) -> Result<Location, UrlError>;
}

impl AsLocation for str {
    fn as_location(&self) -> Result<Location, UrlError> {
        Location::parse(self)
    }
}

impl AsLocation for String {
    fn as_location(&self) -> Result<Location, UrlError> {
        Location::parse(self)
    }
}

impl AsLocation for Path {
    fn as_location(&self) -> Result<Location, UrlError> {
        // A non-UTF-8 path cannot be a URL; keep it as the path it is.
        match self.to_str() {
            Some(s) => Location::parse(s),
            None => Ok(Location::Local(self.to_path_buf())),
        }
    }
}

impl AsLocation for PathBuf {
    fn as_location(&self) -> Result<Location, UrlError> {
        self.as_path().as_location()
    }
}

impl AsLocation for Location {
    fn as_location(&self) -> Result<Location, UrlError> {
        Ok(self.clone())
    }
}

impl<T: AsLocation + ?Sized> AsLocation for &T {
    fn as_location(&self) -> Result<Location, UrlError> {
        (**self).as_location()
    }
}

fn parse_query(url: &str, scheme: Scheme, query: &str) -> Result<UrlOptions, UrlError> {
    let mut o = UrlOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let err = |why: String| UrlError::Query {
            url: redact_query(url),
            key: key.to_string(),
            why,
        };
        let value = percent_decode(value).ok_or_else(|| err("bad percent-encoding".into()))?;
        if scheme != Scheme::S3 {
            return Err(err(format!(
                "{}:// URLs take no query parameters; configure the store through the environment",
                scheme.name()
            )));
        }
        let flag = |v: &str| match v {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(err(format!("expected true or false, got {v:?}"))),
        };
        match key {
            "endpoint" => o.endpoint = Some(value),
            "region" => o.region = Some(value),
            "allow_http" => o.allow_http = Some(flag(&value)?),
            "virtual_hosted" => o.virtual_hosted = Some(flag(&value)?),
            k if is_secret_key(k) => {
                return Err(err(
                    "credentials are not accepted in a URL; use the environment \
                     (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or the [store] config"
                        .into(),
                ))
            }
            _ => {
                return Err(err(
                    "unknown (expected endpoint, region, allow_http or virtual_hosted)".into(),
                ))
            }
        }
    }
    Ok(o)
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "key",
        "token",
        "password",
        "credential",
        "signature",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The URL with its query replaced by `?...` when it might hold something secret.
fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, q))
            if q.split('&')
                .any(|p| is_secret_key(p.split('=').next().unwrap_or(""))) =>
        {
            format!("{base}?<redacted>")
        }
        _ => url.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_urls_are_local() {
        assert_eq!(
            Location::parse("/data/pico").unwrap(),
            Location::Local("/data/pico".into())
        );
        assert_eq!(
            Location::parse("file:///data/pico").unwrap(),
            Location::Local("/data/pico".into())
        );
        assert_eq!(
            Location::parse("rel/dir").unwrap(),
            Location::Local("rel/dir".into())
        );
        assert_eq!(
            Path::new("./x").as_location().unwrap(),
            Location::Local("./x".into())
        );
    }

    #[test]
    fn bucket_urls_parse_with_their_overrides() {
        let Location::Remote(u) = Location::parse(
            "s3://bkt/a/b/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&allow_http=true&region=eu-west-1",
        )
        .unwrap() else {
            panic!("not remote")
        };
        assert_eq!(
            (u.scheme, u.bucket.as_str(), u.prefix.as_str()),
            (Scheme::S3, "bkt", "a/b")
        );
        assert_eq!(u.options.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(u.options.allow_http, Some(true));
        assert_eq!(u.options.region.as_deref(), Some("eu-west-1"));
        assert_eq!(u.object("manifest.json"), "s3://bkt/a/b/manifest.json");
        assert_eq!(u.key("manifest.json"), "a/b/manifest.json");
        assert_eq!(u.to_string(), "s3://bkt/a/b");
        let Location::Remote(g) = Location::parse("gs://b").unwrap() else {
            panic!()
        };
        assert_eq!((g.scheme, g.prefix.as_str()), (Scheme::Gcs, ""));
        assert_eq!(g.key("m.json"), "m.json");
        assert!(Location::parse("az://container/p").unwrap().is_remote());
    }

    #[test]
    fn bad_urls_are_refused_by_name() {
        let e = Location::parse("ftp://host/x").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme") && e.contains("ftp"), "{e}");
        let e = Location::parse("s3:///prefix").unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
        let e = Location::parse("s3://b/p?colour=red")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour") && e.contains("unknown"), "{e}");
        let e = Location::parse("s3://b/p?secret_access_key=hunter2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
        let e = Location::parse("s3://b/a/../c").unwrap_err().to_string();
        assert!(e.contains("'..'"), "{e}");
        let e = Location::parse("gs://b/p?endpoint=x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no query"), "{e}");
    }
}
