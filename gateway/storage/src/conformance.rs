//! The conformance suite every backend must pass. A backend's test opens a fresh store and
//! calls [`run_all`].

use crate::Store;

pub async fn run_all(_store: &Store) {
    todo!()
}
