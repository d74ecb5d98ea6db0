//! Where uploaded files' bytes live. The upload service knows files by key and size; a
//! [`BlobStore`] keeps the bytes, so that an object store can replace the file system.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// What a download reads from a file at a time (the default 4 KiB costs a syscall and a
/// frame per 4 KiB).
const READ_CHUNK: usize = 64 * 1024;

/// The bytes of a request body, as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("more bytes than announced")]
    TooLong,
    #[error("the body ended before the announced size")]
    TooShort,
    #[error("a file with this key exists or is being written")]
    Exists,
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores exactly `size` bytes from `body` under `key`, never holding more than a
    /// chunk in memory. Nothing is kept unless all of them arrive; a key is written once.
    async fn put(&self, key: &str, size: u64, body: ByteStream) -> Result<(), PutError>;
    /// `len` bytes of `key` from `start`, as a stream; `None` if there is no such blob.
    async fn get(&self, key: &str, start: u64, len: u64) -> io::Result<Option<ByteStream>>;
    /// Deletes `key`; a missing key is not an error.
    async fn delete(&self, key: &str) -> io::Result<()>;
}

/// Blobs as files under a directory private to the server (0700, files 0600). A blob is
/// written as `<key>.part` and renamed once complete.
pub struct FsBlobs {
    root: PathBuf,
}

impl FsBlobs {
    pub fn new(root: PathBuf) -> FsBlobs {
        FsBlobs { root }
    }

    /// Keys are `<service>/<id>`, both checked by the caller to be one path segment of
    /// safe characters.
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

#[async_trait]
impl BlobStore for FsBlobs {
    async fn put(&self, key: &str, size: u64, mut body: ByteStream) -> Result<(), PutError> {
        let path = self.path(key);
        if tokio::fs::try_exists(&path).await? {
            return Err(PutError::Exists);
        }
        if let Some(dir) = path.parent() {
            let mut builder = tokio::fs::DirBuilder::new();
            builder.recursive(true).mode(0o700);
            builder.create(dir).await?;
        }
        let part = path.with_extension("part");
        // create_new: a second upload of the same slot while the first runs is refused.
        let mut file = match tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&part).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(PutError::Exists),
            Err(e) => return Err(e.into()),
        };
        let written = async {
            let mut received: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                received += chunk.len() as u64;
                if received > size {
                    return Err(PutError::TooLong);
                }
                file.write_all(&chunk).await?;
            }
            if received < size {
                return Err(PutError::TooShort);
            }
            file.sync_all().await?;
            Ok(())
        }
        .await;
        drop(file);
        match written {
            Ok(()) => Ok(tokio::fs::rename(&part, &path).await?),
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    async fn get(&self, key: &str, start: u64, len: u64) -> io::Result<Option<ByteStream>> {
        let mut file = match tokio::fs::File::open(self.path(key)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        file.seek(io::SeekFrom::Start(start)).await?;
        Ok(Some(Box::pin(tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK))))
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
