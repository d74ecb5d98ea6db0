//! The default backend: one SQLite file in WAL mode, migrated on open.

use std::path::Path;

use crate::{ArchiveDelete, ArchivePage, ArchiveQuery, NewArchiveItem, Result, UserRef, Write};

#[derive(Clone)]
pub struct SqliteStore {}

#[allow(unused_variables)]
impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        todo!()
    }
    pub async fn close(&self) {
        todo!()
    }
    pub async fn create_account(&self, u: UserRef<'_>, credentials: &[u8]) -> Result<()> {
        todo!()
    }
    pub async fn get_account(&self, u: UserRef<'_>) -> Result<Option<Vec<u8>>> {
        todo!()
    }
    pub async fn set_account(&self, u: UserRef<'_>, credentials: &[u8]) -> Result<()> {
        todo!()
    }
    pub async fn delete_account(&self, u: UserRef<'_>) -> Result<bool> {
        todo!()
    }
    pub async fn list_accounts(&self, host: &str) -> Result<Vec<String>> {
        todo!()
    }
    pub async fn kv_get(&self, u: UserRef<'_>, store: &str) -> Result<Option<Vec<u8>>> {
        todo!()
    }
    pub async fn map_get(&self, u: UserRef<'_>, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        todo!()
    }
    pub async fn map_all(&self, u: UserRef<'_>, store: &str) -> Result<Vec<(String, Vec<u8>)>> {
        todo!()
    }
    pub async fn write_batch(&self, u: UserRef<'_>, writes: &[Write<'_>]) -> Result<()> {
        todo!()
    }
    pub async fn archive_append(&self, u: UserRef<'_>, store: &str, item: NewArchiveItem<'_>, quota: Option<u64>) -> Result<()> {
        todo!()
    }
    pub async fn archive_query(&self, u: UserRef<'_>, store: &str, q: &ArchiveQuery<'_>) -> Result<ArchivePage> {
        todo!()
    }
    pub async fn archive_count(&self, u: UserRef<'_>, store: &str) -> Result<u64> {
        todo!()
    }
    pub async fn archive_delete(&self, u: UserRef<'_>, store: &str, which: ArchiveDelete<'_>) -> Result<u64> {
        todo!()
    }
}
