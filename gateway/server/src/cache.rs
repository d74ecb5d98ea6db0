//! Small per-account values that routing reads for every stanza (blocklists, archive
//! preferences), loaded from storage once and kept until they change.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

pub struct AccountCache<T> {
    values: Mutex<HashMap<String, T>>,
}

impl<T> Default for AccountCache<T> {
    fn default() -> Self {
        AccountCache { values: Mutex::new(HashMap::new()) }
    }
}

impl<T: Clone> AccountCache<T> {
    /// The cached value for `account`, loading it on first use.
    pub async fn get_or_load<F: Future<Output = T>>(&self, account: &str, load: impl FnOnce() -> F) -> T {
        if let Some(v) = self.values.lock().expect("account cache").get(account) {
            return v.clone();
        }
        let v = load().await;
        self.values.lock().expect("account cache").insert(account.to_owned(), v.clone());
        v
    }

    /// Drops the value after it changed in storage.
    pub fn forget(&self, account: &str) {
        self.values.lock().expect("account cache").remove(account);
    }
}
