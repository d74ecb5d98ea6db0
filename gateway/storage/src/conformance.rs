//! The conformance suite every backend must pass. A backend's test opens a fresh store and
//! calls [`run_all`].
//!
//! Each check uses its own user names (and hosts where it lists accounts), so the checks
//! don't see each other's data. Failures panic with a description of the broken contract.

use crate::{
    ArchiveAppend, ArchiveDelete, ArchiveItem, ArchivePage, ArchiveQuery, NewArchiveItem, Quota, Record, StorageError,
    Store, UserRef, Write,
};

const HOST: &str = "conformance.example";
const OTHER_HOST: &str = "other.conformance.example";

/// A payload that a text-based encoding would mangle.
const BINARY: &[u8] = b"\0bin\xff\x00ary\xfe\0";

pub async fn run_all(store: &Store) {
    accounts(store).await;
    account_deletion_cascades(store).await;
    account_listing(store).await;
    keyval(store).await;
    map(store).await;
    map_count(store).await;
    write_batch(store).await;
    write_batch_is_atomic_for_readers(store).await;
    concurrent_write_batches(store).await;
    archive_append_and_count(store).await;
    archive_quota(store).await;
    archive_byte_quota(store).await;
    archive_byte_pages(store).await;
    archive_filters(store).await;
    archive_time_range(store).await;
    archive_stamps_never_go_back(store).await;
    archive_paging(store).await;
    archive_unknown_ids(store).await;
    archive_delete(store).await;
    archive_keep_newest(store).await;
    archive_get(store).await;
    archive_replace(store).await;
    archive_batch(store).await;
    archive_expire(store).await;
    isolation(store).await;
}

/// Retention removes old items of one store for every user, and nothing else.
async fn archive_expire(store: &Store) {
    for (u, s, id, stamp) in [("exp-a", "exp", "old-a", 10), ("exp-b", "exp", "old-b", 20), ("exp-a", "exp", "new-a", 100), ("exp-a", "keep", "old-k", 10)] {
        store.archive_append(user(u), s, item(id, stamp, "peer@example.org", b"x"), None).await.unwrap();
    }
    assert_eq!(store.archive_expire("exp", 50).await.unwrap(), 2);
    assert_eq!(store.archive_count(user("exp-a"), "exp").await.unwrap(), 1);
    assert_eq!(store.archive_count(user("exp-b"), "exp").await.unwrap(), 0);
    assert_eq!(store.archive_count(user("exp-a"), "keep").await.unwrap(), 1, "other stores are untouched");
}

/// A batch spans users and stores, lands whole, and fails whole on a duplicate id.
async fn archive_batch(store: &Store) {
    let entry = |user: &str, s: &str, id: &str| crate::ArchiveAppend {
        host: HOST.to_owned(),
        user: user.to_owned(),
        store: s.to_owned(),
        id: id.to_owned(),
        stamp_us: 1,
        with: "peer@example.org".to_owned(),
        payload: id.as_bytes().to_vec(),
    };
    let batch = [entry("batch-a", "mam", "1"), entry("batch-b", "mam", "2"), entry("batch-a", "other", "3")];
    store.archive_append_batch(&batch).await.unwrap();
    assert_eq!(store.archive_count(user("batch-a"), "mam").await.unwrap(), 1);
    assert_eq!(store.archive_count(user("batch-b"), "mam").await.unwrap(), 1);
    assert_eq!(store.archive_count(user("batch-a"), "other").await.unwrap(), 1);
    let clash = [entry("batch-a", "mam", "4"), entry("batch-a", "mam", "1")];
    assert!(matches!(store.archive_append_batch(&clash).await, Err(StorageError::AlreadyExists)));
    assert_eq!(store.archive_count(user("batch-a"), "mam").await.unwrap(), 1, "a failed batch leaves nothing");
}

fn user(name: &str) -> UserRef<'_> {
    UserRef {
        host: HOST,
        user: name,
    }
}

fn item<'a>(id: &'a str, stamp_us: i64, with: &'a str, payload: &'a [u8]) -> NewArchiveItem<'a> {
    NewArchiveItem {
        id,
        stamp_us,
        with,
        payload,
    }
}

/// Appends items whose payload is their id.
async fn append(store: &Store, u: UserRef<'_>, name: &str, items: &[(&str, i64, &str)]) {
    for &(id, stamp_us, with) in items {
        store
            .archive_append(u, name, item(id, stamp_us, with, id.as_bytes()), None)
            .await
            .unwrap();
    }
}

/// Runs a query and returns the page's ids and completeness.
async fn page(
    store: &Store,
    u: UserRef<'_>,
    name: &str,
    q: ArchiveQuery<'_>,
) -> (Vec<String>, bool) {
    let ArchivePage { items, complete } = store
        .archive_query(u, name, &q)
        .await
        .unwrap_or_else(|e| panic!("query {q:?} failed: {e}"));
    (items.into_iter().map(|i| i.id).collect(), complete)
}

async fn archive_ids(store: &Store, u: UserRef<'_>, name: &str) -> Vec<String> {
    page(store, u, name, ArchiveQuery::default()).await.0
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn accounts(store: &Store) {
    let u = user("acct-alice");
    assert_eq!(store.get_account(u).await.unwrap(), None, "no account yet");
    let r = store.set_account(u, b"x").await;
    assert!(
        matches!(r, Err(StorageError::NotFound)),
        "set_account on a missing account: {r:?}"
    );
    assert_eq!(
        store.get_account(u).await.unwrap(),
        None,
        "set_account must not create"
    );

    store.create_account(u, BINARY).await.unwrap();
    assert_eq!(store.get_account(u).await.unwrap().as_deref(), Some(BINARY));
    let r = store.create_account(u, b"other").await;
    assert!(
        matches!(r, Err(StorageError::AlreadyExists)),
        "duplicate create_account: {r:?}"
    );
    assert_eq!(
        store.get_account(u).await.unwrap().as_deref(),
        Some(BINARY),
        "a failed create must not overwrite"
    );

    store.set_account(u, b"new credentials").await.unwrap();
    assert_eq!(
        store.get_account(u).await.unwrap().as_deref(),
        Some(&b"new credentials"[..])
    );

    assert!(
        store.delete_account(u).await.unwrap(),
        "delete_account of an existing account"
    );
    assert_eq!(store.get_account(u).await.unwrap(), None);
    assert!(
        !store.delete_account(u).await.unwrap(),
        "delete_account of a missing account"
    );
    let r = store.set_account(u, b"x").await;
    assert!(
        matches!(r, Err(StorageError::NotFound)),
        "set_account after delete: {r:?}"
    );

    store.create_account(u, b"again").await.unwrap();
    assert_eq!(
        store.get_account(u).await.unwrap().as_deref(),
        Some(&b"again"[..]),
        "re-registration"
    );
}

async fn account_deletion_cascades(store: &Store) {
    let victim = user("cascade-victim");
    let neighbour = user("cascade-neighbour");
    let namesake = UserRef {
        host: OTHER_HOST,
        user: "cascade-victim",
    };
    for u in [victim, neighbour, namesake] {
        store.create_account(u, b"creds").await.unwrap();
        store.kv_set(u, "vcard", Some(b"vcard")).await.unwrap();
        store.kv_set(u, "private", Some(b"private")).await.unwrap();
        store
            .map_set(u, "roster", "friend@example.com", Some(b"item"))
            .await
            .unwrap();
        store
            .archive_append(
                u,
                "offline",
                item("m1", 1, "friend@example.com", b"msg"),
                None,
            )
            .await
            .unwrap();
        store
            .archive_append(u, "mam", item("m1", 1, "friend@example.com", b"msg"), None)
            .await
            .unwrap();
    }

    assert!(store.delete_account(victim).await.unwrap());

    assert_eq!(store.get_account(victim).await.unwrap(), None);
    assert_eq!(
        store.kv_get(victim, "vcard").await.unwrap(),
        None,
        "keyval survived account deletion"
    );
    assert_eq!(
        store.kv_get(victim, "private").await.unwrap(),
        None,
        "keyval survived account deletion"
    );
    assert_eq!(
        store
            .map_get(victim, "roster", "friend@example.com")
            .await
            .unwrap(),
        None,
        "map survived account deletion"
    );
    assert!(
        store.map_all(victim, "roster").await.unwrap().is_empty(),
        "map survived account deletion"
    );
    for name in ["offline", "mam"] {
        assert_eq!(
            store.archive_count(victim, name).await.unwrap(),
            0,
            "archive {name} survived account deletion"
        );
        assert!(page(store, victim, name, ArchiveQuery::default())
            .await
            .0
            .is_empty());
    }

    for u in [neighbour, namesake] {
        assert_eq!(
            store.get_account(u).await.unwrap().as_deref(),
            Some(&b"creds"[..]),
            "{u:?} lost its account"
        );
        assert_eq!(
            store.kv_get(u, "vcard").await.unwrap().as_deref(),
            Some(&b"vcard"[..]),
            "{u:?} lost keyval"
        );
        assert_eq!(
            store.map_all(u, "roster").await.unwrap().len(),
            1,
            "{u:?} lost map items"
        );
        assert_eq!(
            store.archive_count(u, "offline").await.unwrap(),
            1,
            "{u:?} lost archive items"
        );
        assert_eq!(
            store.archive_count(u, "mam").await.unwrap(),
            1,
            "{u:?} lost archive items"
        );
    }

    // Stores may exist without an account (data written before registration completed):
    // deletion still clears them and reports that there was no account.
    let orphan = user("cascade-orphan");
    store.kv_set(orphan, "vcard", Some(b"v")).await.unwrap();
    assert!(!store.delete_account(orphan).await.unwrap());
    assert_eq!(store.kv_get(orphan, "vcard").await.unwrap(), None);
}

async fn account_listing(store: &Store) {
    let host = "list.conformance.example";
    let other = "list2.conformance.example";
    assert!(store.list_accounts(host).await.unwrap().is_empty());
    for name in ["carol", "alice", "dave", "bob"] {
        store
            .create_account(UserRef { host, user: name }, b"c")
            .await
            .unwrap();
    }
    store
        .create_account(
            UserRef {
                host: other,
                user: "zed",
            },
            b"c",
        )
        .await
        .unwrap();

    assert_eq!(
        store.list_accounts(host).await.unwrap(),
        strings(&["alice", "bob", "carol", "dave"]),
        "sorted, one host only"
    );
    assert_eq!(store.list_accounts(other).await.unwrap(), strings(&["zed"]));
    assert!(store
        .list_accounts("nowhere.example")
        .await
        .unwrap()
        .is_empty());

    store
        .delete_account(UserRef { host, user: "bob" })
        .await
        .unwrap();
    assert_eq!(
        store.list_accounts(host).await.unwrap(),
        strings(&["alice", "carol", "dave"])
    );
}

async fn keyval(store: &Store) {
    let u = user("kv-user");
    assert_eq!(store.kv_get(u, "vcard").await.unwrap(), None);

    store.kv_set(u, "vcard", Some(b"one")).await.unwrap();
    assert_eq!(
        store.kv_get(u, "vcard").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    store.kv_set(u, "vcard", Some(BINARY)).await.unwrap();
    assert_eq!(
        store.kv_get(u, "vcard").await.unwrap().as_deref(),
        Some(BINARY),
        "overwrite with binary"
    );

    // An empty value is a value, not an absence.
    store.kv_set(u, "private", Some(b"")).await.unwrap();
    assert_eq!(store.kv_get(u, "private").await.unwrap(), Some(Vec::new()));
    assert_eq!(
        store.kv_get(u, "vcard").await.unwrap().as_deref(),
        Some(BINARY),
        "stores are independent"
    );

    store.kv_set(u, "vcard", None).await.unwrap();
    assert_eq!(store.kv_get(u, "vcard").await.unwrap(), None, "deleted");
    store.kv_set(u, "vcard", None).await.unwrap();
    assert_eq!(store.kv_get(u, "private").await.unwrap(), Some(Vec::new()));
}

async fn map(store: &Store) {
    let u = user("map-user");
    assert_eq!(
        store.map_get(u, "roster", "a@example.com").await.unwrap(),
        None
    );
    assert!(store.map_all(u, "roster").await.unwrap().is_empty());

    for (key, value) in [
        ("carol@example.com", &b"c"[..]),
        ("alice@example.com", b"a"),
        ("bob@example.com", BINARY),
    ] {
        store.map_set(u, "roster", key, Some(value)).await.unwrap();
    }
    assert_eq!(
        store
            .map_get(u, "roster", "bob@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some(BINARY)
    );
    assert_eq!(
        store.map_all(u, "roster").await.unwrap(),
        vec![
            ("alice@example.com".to_string(), b"a".to_vec()),
            ("bob@example.com".to_string(), BINARY.to_vec()),
            ("carol@example.com".to_string(), b"c".to_vec()),
        ],
        "map_all sorted by key"
    );

    store
        .map_set(u, "roster", "alice@example.com", Some(b"a2"))
        .await
        .unwrap();
    assert_eq!(
        store
            .map_get(u, "roster", "alice@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"a2"[..])
    );
    store
        .map_set(u, "roster", "carol@example.com", None)
        .await
        .unwrap();
    store
        .map_set(u, "roster", "nobody@example.com", None)
        .await
        .unwrap();
    assert_eq!(
        store
            .map_get(u, "roster", "carol@example.com")
            .await
            .unwrap(),
        None,
        "deleted"
    );
    let keys: Vec<String> = store
        .map_all(u, "roster")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, strings(&["alice@example.com", "bob@example.com"]));

    assert!(
        store.map_all(u, "blocklist").await.unwrap().is_empty(),
        "maps are per store name"
    );
    assert_eq!(
        store
            .map_get(u, "blocklist", "alice@example.com")
            .await
            .unwrap(),
        None
    );
}

/// Counting keys stops at the bound asked for, and sees one user's one map only.
async fn map_count(store: &Store) {
    let u = user("map-count");
    assert_eq!(store.map_count(u, "pending", 10).await.unwrap(), 0);
    for key in ["a@example.com", "b@example.com", "c@example.com"] {
        store.map_set(u, "pending", key, Some(b"x")).await.unwrap();
    }
    store.map_set(u, "other", "a@example.com", Some(b"x")).await.unwrap();
    store.map_set(user("map-count-2"), "pending", "z@example.com", Some(b"x")).await.unwrap();
    assert_eq!(store.map_count(u, "pending", 10).await.unwrap(), 3, "per user and store name");
    assert_eq!(store.map_count(u, "pending", 2).await.unwrap(), 2, "stops at the bound");
    assert_eq!(store.map_count(u, "pending", 0).await.unwrap(), 0);
    store.map_set(u, "pending", "a@example.com", Some(b"again")).await.unwrap();
    store.map_set(u, "pending", "b@example.com", None).await.unwrap();
    assert_eq!(store.map_count(u, "pending", 10).await.unwrap(), 2, "rewrites don't count twice, deletions go");
}

async fn write_batch(store: &Store) {
    let u = user("batch-user");
    store.kv_set(u, "vcard", Some(b"old")).await.unwrap();
    store
        .map_set(u, "roster", "gone@example.com", Some(b"x"))
        .await
        .unwrap();

    store.write_batch(u, &[]).await.unwrap();
    store
        .write_batch(
            u,
            &[
                Write::Keyval {
                    store: "vcard",
                    value: Some(b"new"),
                },
                Write::Keyval {
                    store: "private",
                    value: Some(BINARY),
                },
                Write::Map {
                    store: "roster",
                    key: "a@example.com",
                    value: Some(b"a"),
                },
                Write::Map {
                    store: "roster",
                    key: "gone@example.com",
                    value: None,
                },
                Write::Map {
                    store: "bookmarks",
                    key: "room@muc.example.com",
                    value: Some(b"b"),
                },
                // Writes apply in order: the last one to a slot wins.
                Write::Keyval {
                    store: "vcard",
                    value: Some(b"newer"),
                },
                Write::Map {
                    store: "roster",
                    key: "b@example.com",
                    value: Some(b"b"),
                },
                Write::Map {
                    store: "roster",
                    key: "b@example.com",
                    value: None,
                },
            ],
        )
        .await
        .unwrap();

    assert_eq!(
        store.kv_get(u, "vcard").await.unwrap().as_deref(),
        Some(&b"newer"[..])
    );
    assert_eq!(
        store.kv_get(u, "private").await.unwrap().as_deref(),
        Some(BINARY)
    );
    assert_eq!(
        store.map_all(u, "roster").await.unwrap(),
        vec![("a@example.com".to_string(), b"a".to_vec())]
    );
    assert_eq!(
        store
            .map_get(u, "bookmarks", "room@muc.example.com")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"b"[..])
    );
}

/// A reader racing a writer must never see half of a batch. Each batch sets a keyval
/// counter and then a map counter to the same value; reading the keyval first, the map
/// read afterwards can only be behind it if a batch was visible half-applied.
/// Many batches at once (which a backend may commit together): each lands whole, for its
/// own user, by the time its call returns.
async fn concurrent_write_batches(store: &Store) {
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("many-{i}");
                let value = format!("value {i}");
                let writes = [
                    Write::Keyval { store: "many", value: Some(value.as_bytes()) },
                    Write::Map { store: "many", key: "k", value: Some(value.as_bytes()) },
                ];
                store.write_batch(user(&name), &writes).await.unwrap();
                // Visible as soon as the call returns.
                assert_eq!(store.kv_get(user(&name), "many").await.unwrap().as_deref(), Some(value.as_bytes()));
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("no panic");
    }
    for i in 0..200 {
        let name = format!("many-{i}");
        let want = format!("value {i}");
        assert_eq!(store.map_get(user(&name), "many", "k").await.unwrap().as_deref(), Some(want.as_bytes()));
    }
}

async fn write_batch_is_atomic_for_readers(store: &Store) {
    const BATCHES: u32 = 40;
    let u = user("batch-race");
    let read = |v: Option<Vec<u8>>| {
        v.map_or(0, |b| {
            u32::from_be_bytes(b.try_into().expect("a 4-byte counter"))
        })
    };

    let writer = async {
        for i in 1..=BATCHES {
            let v = i.to_be_bytes();
            store
                .write_batch(
                    u,
                    &[
                        Write::Keyval {
                            store: "counter",
                            value: Some(&v),
                        },
                        Write::Map {
                            store: "counter",
                            key: "n",
                            value: Some(&v),
                        },
                    ],
                )
                .await
                .unwrap();
        }
    };
    let reader = async {
        loop {
            let kv = read(store.kv_get(u, "counter").await.unwrap());
            let map = read(store.map_get(u, "counter", "n").await.unwrap());
            assert!(
                map >= kv,
                "saw keyval {kv} but map {map}: a batch was visible half-applied"
            );
            if kv == BATCHES {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::join!(writer, reader);
}

async fn archive_append_and_count(store: &Store) {
    let u = user("archive-basic");
    assert_eq!(store.archive_count(u, "offline").await.unwrap(), 0);
    assert_eq!(
        page(store, u, "offline", ArchiveQuery::default()).await,
        (vec![], true)
    );

    // Stamps deliberately out of order: items come back in insertion order, an earlier
    // stamp than the store's newest raised to it.
    let items = [
        item("first", 3_000, "juliet@example.com", BINARY),
        item("second", 1_000, "romeo@example.com/orchard", b""),
        item("third", 2_000, "juliet@example.com", b"<message/>"),
    ];
    for it in items {
        store.archive_append(u, "offline", it, None).await.unwrap();
    }
    assert_eq!(store.archive_count(u, "offline").await.unwrap(), 3);
    let got = store
        .archive_query(u, "offline", &ArchiveQuery::default())
        .await
        .unwrap();
    let want: Vec<ArchiveItem> = items
        .iter()
        .map(|i| ArchiveItem {
            id: i.id.into(),
            stamp_us: 3_000,
            with: i.with.into(),
            payload: i.payload.to_vec(),
        })
        .collect();
    assert_eq!(
        got,
        ArchivePage {
            items: want,
            complete: true
        },
        "items round-trip, in insertion order"
    );

    let r = store
        .archive_append(
            u,
            "offline",
            item("second", 9, "x@example.com", b"dup"),
            None,
        )
        .await;
    assert!(
        matches!(r, Err(StorageError::AlreadyExists)),
        "duplicate archive id: {r:?}"
    );
    assert_eq!(store.archive_count(u, "offline").await.unwrap(), 3);
    let got = store
        .archive_query(u, "offline", &ArchiveQuery::default())
        .await
        .unwrap();
    assert_eq!(
        got.items[1].payload, b"",
        "a failed append must not overwrite"
    );

    // Ids are unique per user and store only.
    store
        .archive_append(u, "mam", item("second", 1, "x@example.com", b"m"), None)
        .await
        .unwrap();
    store
        .archive_append(
            user("archive-basic-2"),
            "offline",
            item("second", 1, "x@example.com", b"m"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(store.archive_count(u, "offline").await.unwrap(), 3);
    assert_eq!(store.archive_count(u, "mam").await.unwrap(), 1);
}

async fn archive_quota(store: &Store) {
    let u = user("archive-quota");
    for id in ["q1", "q2", "q3"] {
        store
            .archive_append(u, "offline", item(id, 1, "x@example.com", b"m"), Some(Quota::items(3)))
            .await
            .unwrap();
    }
    let r = store
        .archive_append(u, "offline", item("q4", 1, "x@example.com", b"m"), Some(Quota::items(3)))
        .await;
    assert!(
        matches!(r, Err(StorageError::QuotaExceeded)),
        "append over quota: {r:?}"
    );
    assert_eq!(
        store.archive_count(u, "offline").await.unwrap(),
        3,
        "a refused append must not insert"
    );
    let r = store
        .archive_append(u, "offline", item("q4", 1, "x@example.com", b"m"), Some(Quota::items(2)))
        .await;
    assert!(
        matches!(r, Err(StorageError::QuotaExceeded)),
        "append when already over quota: {r:?}"
    );

    store
        .archive_append(u, "offline", item("q4", 1, "x@example.com", b"m"), Some(Quota::items(4)))
        .await
        .unwrap();
    store
        .archive_append(u, "offline", item("q5", 1, "x@example.com", b"m"), None)
        .await
        .unwrap();
    assert_eq!(store.archive_count(u, "offline").await.unwrap(), 5);

    // The quota counts this user's items in this store only.
    store
        .archive_append(u, "mam", item("q1", 1, "x@example.com", b"m"), Some(Quota::items(1)))
        .await
        .unwrap();
    store
        .archive_append(
            user("archive-quota-2"),
            "offline",
            item("q1", 1, "x@example.com", b"m"),
            Some(Quota::items(1)),
        )
        .await
        .unwrap();

    let r = store
        .archive_append(
            user("archive-quota-3"),
            "offline",
            item("q1", 1, "x@example.com", b"m"),
            Some(Quota::items(0)),
        )
        .await;
    assert!(
        matches!(r, Err(StorageError::QuotaExceeded)),
        "zero quota: {r:?}"
    );

    // Deleting makes room again.
    assert_eq!(
        store
            .archive_delete(u, "offline", ArchiveDelete::Ids(&["q1", "q2"]))
            .await
            .unwrap(),
        2
    );
    store
        .archive_append(u, "offline", item("q6", 1, "x@example.com", b"m"), Some(Quota::items(4)))
        .await
        .unwrap();
    assert_eq!(store.archive_count(u, "offline").await.unwrap(), 4);
}

/// The byte quota counts the user's payloads in the store, the new one included.
async fn archive_byte_quota(store: &Store) {
    let u = user("archive-byte-quota");
    let quota = Some(Quota { items: 100, bytes: 10 });
    for id in ["b1", "b2"] {
        store.archive_append(u, "offline", item(id, 1, "x@example.com", b"1234"), quota).await.unwrap();
    }
    let r = store.archive_append(u, "offline", item("b3", 1, "x@example.com", b"123"), quota).await;
    assert!(matches!(r, Err(StorageError::QuotaExceeded)), "append over the byte quota: {r:?}");
    assert_eq!(store.archive_count(u, "offline").await.unwrap(), 2, "a refused append must not insert");
    // Exactly at the bound fits.
    store.archive_append(u, "offline", item("b3", 1, "x@example.com", b"12"), quota).await.unwrap();
    // One item alone larger than the quota never fits.
    let big = user("archive-byte-quota-2");
    let r = store.archive_append(big, "offline", item("b1", 1, "x@example.com", &[0; 11]), quota).await;
    assert!(matches!(r, Err(StorageError::QuotaExceeded)), "an item over the byte quota: {r:?}");
    // Other stores and users do not count.
    store.archive_append(u, "mam", item("b1", 1, "x@example.com", b"12345678"), quota).await.unwrap();
    store.archive_append(big, "offline", item("b1", 1, "x@example.com", &[0; 10]), quota).await.unwrap();
    // Deleting makes room again.
    store.archive_delete(u, "offline", ArchiveDelete::Ids(&["b1"])).await.unwrap();
    store.archive_append(u, "offline", item("b4", 1, "x@example.com", b"1234"), quota).await.unwrap();
}

/// Pages bounded in bytes: as many items as fit, the first one whatever its size.
async fn archive_byte_pages(store: &Store) {
    let u = user("archive-byte-pages");
    for (id, len) in [("p1", 3), ("p2", 3), ("p3", 5), ("p4", 1), ("p5", 2)] {
        store.archive_append(u, "offline", item(id, 1, "x@example.com", &vec![b'x'; len]), None).await.unwrap();
    }
    let q = |after_id, limit, max_bytes, last_page| ArchiveQuery { after_id, limit, max_bytes, last_page, ..Default::default() };
    let ids = |p: ArchivePage| (p.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), p.complete);
    let read = |query| async move { ids(store.archive_query(u, "offline", &query).await.unwrap()) };
    assert_eq!(read(q(None, Some(10), Some(6), false)).await, (strings(&["p1", "p2"]), false));
    assert_eq!(read(q(None, Some(10), Some(8), false)).await, (strings(&["p1", "p2"]), false));
    assert_eq!(read(q(Some("p2"), Some(10), Some(2), false)).await, (strings(&["p3"]), false), "the first item comes whatever its size");
    assert_eq!(read(q(Some("p3"), Some(10), Some(3), false)).await, (strings(&["p4", "p5"]), true));
    assert_eq!(read(q(None, Some(1), Some(100), false)).await, (strings(&["p1"]), false), "the item limit still holds");
    assert_eq!(read(q(None, None, Some(100), false)).await, (strings(&["p1", "p2", "p3", "p4", "p5"]), true));
    // The last page is counted from the end.
    assert_eq!(read(q(None, Some(10), Some(8), true)).await, (strings(&["p3", "p4", "p5"]), false));
}

async fn archive_filters(store: &Store) {
    let u = user("archive-filter");
    // f0..f9, stamps 1000, 1010, ..., 1090; even ones with romeo, odd ones with mercutio.
    let ids: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let items: Vec<(&str, i64, &str)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id.as_str(),
                1000 + 10 * i as i64,
                if i % 2 == 0 {
                    "romeo@example.com"
                } else {
                    "mercutio@example.com"
                },
            )
        })
        .collect();
    append(store, u, "mam", &items).await;
    let romeo = Some("romeo@example.com");

    let q = |with, start_us, end_us| ArchiveQuery {
        with,
        start_us,
        end_us,
        ..Default::default()
    };
    assert_eq!(
        page(store, u, "mam", q(romeo, None, None)).await,
        (strings(&["f0", "f2", "f4", "f6", "f8"]), true),
        "with"
    );
    assert_eq!(
        page(
            store,
            u,
            "mam",
            q(Some("romeo@example.com/balcony"), None, None)
        )
        .await,
        (vec![], true),
        "with matches exactly"
    );
    assert_eq!(
        page(store, u, "mam", q(None, Some(1030), None)).await,
        (strings(&["f3", "f4", "f5", "f6", "f7", "f8", "f9"]), true),
        "start, inclusive"
    );
    assert_eq!(
        page(store, u, "mam", q(None, None, Some(1030))).await,
        (strings(&["f0", "f1", "f2", "f3"]), true),
        "end, inclusive"
    );
    assert_eq!(
        page(store, u, "mam", q(None, Some(1025), Some(1055))).await,
        (strings(&["f3", "f4", "f5"]), true),
        "start and end"
    );
    assert_eq!(
        page(store, u, "mam", q(romeo, Some(1020), Some(1050))).await,
        (strings(&["f2", "f4"]), true),
        "with, start and end"
    );
    assert_eq!(
        page(store, u, "mam", q(None, Some(1050), Some(1040))).await,
        (vec![], true),
        "empty range"
    );
    assert_eq!(
        page(store, u, "mam", q(None, Some(2000), None)).await,
        (vec![], true),
        "start after everything"
    );

    // Filters combined with paging: `complete` concerns matching items only.
    let fq = |after_id, before_id, limit, last_page| ArchiveQuery {
        with: romeo,
        after_id,
        before_id,
        limit,
        last_page,
        ..Default::default()
    };
    assert_eq!(
        page(store, u, "mam", fq(None, None, Some(2), false)).await,
        (strings(&["f0", "f2"]), false)
    );
    assert_eq!(
        page(store, u, "mam", fq(Some("f2"), None, Some(2), false)).await,
        (strings(&["f4", "f6"]), false)
    );
    assert_eq!(
        page(store, u, "mam", fq(Some("f6"), None, Some(2), false)).await,
        (strings(&["f8"]), true)
    );
    assert_eq!(
        page(store, u, "mam", fq(Some("f5"), None, Some(2), false)).await,
        (strings(&["f6", "f8"]), true),
        "after an id that doesn't match the filter"
    );
    assert_eq!(
        page(store, u, "mam", fq(None, None, Some(2), true)).await,
        (strings(&["f6", "f8"]), false)
    );
    assert_eq!(
        page(store, u, "mam", fq(None, Some("f6"), Some(2), false)).await,
        (strings(&["f2", "f4"]), false)
    );
    assert_eq!(
        page(store, u, "mam", fq(None, Some("f4"), Some(2), false)).await,
        (strings(&["f0", "f2"]), true)
    );
    assert_eq!(
        page(store, u, "mam", fq(None, Some("f7"), Some(2), false)).await,
        (strings(&["f4", "f6"]), false),
        "before an id that doesn't match the filter"
    );

    let sq = |start_us, end_us, limit, last_page| ArchiveQuery {
        start_us,
        end_us,
        limit,
        last_page,
        ..Default::default()
    };
    assert_eq!(
        page(store, u, "mam", sq(Some(1030), None, Some(3), true)).await,
        (strings(&["f7", "f8", "f9"]), false)
    );
    assert_eq!(
        page(store, u, "mam", sq(Some(1030), None, Some(3), false)).await,
        (strings(&["f3", "f4", "f5"]), false)
    );
    assert_eq!(
        page(store, u, "mam", sq(None, Some(1030), Some(2), false)).await,
        (strings(&["f0", "f1"]), false)
    );
    assert_eq!(
        page(store, u, "mam", sq(None, Some(1030), Some(2), true)).await,
        (strings(&["f2", "f3"]), false)
    );
    assert_eq!(
        page(store, u, "mam", sq(Some(1060), Some(1080), Some(3), false)).await,
        (strings(&["f6", "f7", "f8"]), true)
    );
}

/// Queries by time against the model of their meaning, on a store with runs of equal
/// stamps (up to 13 items long) and seqs with gaps (another store's appends in between):
/// whatever way a backend finds the items of a time range, each bound must fall exactly
/// before the first item stamped at or after start and after the last at or before end.
async fn archive_time_range(store: &Store) {
    let u = user("archive-time");
    let name = "mam";
    let partners = ["p0@example.com", "p1@example.com", "p2@example.com"];
    let items: Vec<(String, i64, &str)> =
        (0..150i64).map(|i| (format!("t{i:03}"), 1000 + (i * i / 150) * 10, partners[i as usize % 3])).collect();
    for (n, (id, stamp, with)) in items.iter().enumerate() {
        store.archive_append(u, name, item(id, *stamp, with, id.as_bytes()), None).await.unwrap();
        if n % 4 == 0 {
            let other = format!("o{n}");
            store.archive_append(user("archive-time-2"), name, item(&other, *stamp, with, b"o"), None).await.unwrap();
        }
    }
    // What a query means: the matching items, then the page in its direction.
    let model = |q: &ArchiveQuery<'_>| -> (Vec<String>, bool) {
        let position = |id: &str| items.iter().position(|i| i.0 == id).unwrap();
        let matching: Vec<String> = items
            .iter()
            .enumerate()
            .filter(|(n, (_, stamp, with))| {
                q.with.is_none_or(|w| w == *with)
                    && q.start_us.is_none_or(|s| *stamp >= s)
                    && q.end_us.is_none_or(|e| *stamp <= e)
                    && q.after_id.is_none_or(|a| *n > position(a))
                    && q.before_id.is_none_or(|b| *n < position(b))
            })
            .map(|(_, (id, ..))| id.clone())
            .collect();
        let limit = q.limit.unwrap_or(usize::MAX);
        let complete = matching.len() <= limit;
        let page = if q.last_page || q.before_id.is_some() {
            matching[matching.len().saturating_sub(limit)..].to_vec()
        } else {
            matching.into_iter().take(limit).collect()
        };
        (page, complete)
    };
    let model = &model;
    let check = |q: ArchiveQuery<'static>| async move {
        assert_eq!(page(store, u, name, q.clone()).await, model(&q), "{q:?}");
    };
    let mut times: Vec<i64> = items.iter().flat_map(|i| [i.1 - 1, i.1, i.1 + 1]).collect();
    times.extend([i64::MIN, 0, i64::MAX]);
    times.sort();
    times.dedup();
    for &t in &times {
        check(ArchiveQuery { start_us: Some(t), ..Default::default() }).await;
        check(ArchiveQuery { end_us: Some(t), ..Default::default() }).await;
        check(ArchiveQuery { start_us: Some(t), limit: Some(5), ..Default::default() }).await;
        check(ArchiveQuery { end_us: Some(t), limit: Some(5), last_page: true, ..Default::default() }).await;
        check(ArchiveQuery { start_us: Some(t), end_us: Some(t.saturating_add(40)), with: Some(partners[1]), ..Default::default() }).await;
    }
    // With RSM paging inside a time range.
    for (start, end) in [(1000, 1100), (1150, 1150), (1200, 2000), (1480, 1480)] {
        for id in ["t000", "t012", "t013", "t060", "t100", "t149"] {
            let q = ArchiveQuery { start_us: Some(start), end_us: Some(end), limit: Some(4), ..Default::default() };
            check(ArchiveQuery { after_id: Some(id), ..q.clone() }).await;
            check(ArchiveQuery { before_id: Some(id), ..q.clone() }).await;
            check(ArchiveQuery { after_id: Some(id), with: Some(partners[0]), ..q }).await;
        }
    }
}

/// No append, single, batched or imported, stores a stamp earlier than its store's
/// newest: it is raised to it (and a query by time then finds it there).
async fn archive_stamps_never_go_back(store: &Store) {
    let u = user("archive-monotonic");
    let stamp = |id: &'static str, name: &'static str| async move { store.archive_get(u, name, id).await.unwrap().unwrap().stamp_us };
    store.archive_append(u, "mam", item("a1", 500, "x@example.com", b"1"), None).await.unwrap();
    store.archive_append(u, "mam", item("a2", 400, "x@example.com", b"2"), Some(Quota::items(10))).await.unwrap();
    store.archive_append(u, "mam", item("a3", 600, "x@example.com", b"3"), None).await.unwrap();
    assert_eq!((stamp("a1", "mam").await, stamp("a2", "mam").await, stamp("a3", "mam").await), (500, 500, 600));
    // Other stores have their own time order.
    store.archive_append(u, "offline", item("o1", 10, "x@example.com", b"o"), None).await.unwrap();
    assert_eq!(stamp("o1", "offline").await, 10);

    let entry = |user: &str, name: &str, id: &str, stamp_us| ArchiveAppend {
        host: HOST.to_owned(),
        user: user.to_owned(),
        store: name.to_owned(),
        id: id.to_owned(),
        stamp_us,
        with: "x@example.com".to_owned(),
        payload: b"b".to_vec(),
    };
    // Raised to the stored items and to those before it in the batch, store by store.
    let batch = [
        entry("archive-monotonic", "mam", "b1", 550),
        entry("archive-monotonic", "offline", "b2", 5),
        entry("archive-monotonic", "mam", "b3", 700),
        entry("archive-monotonic", "mam", "b4", 650),
        entry("archive-monotonic-2", "mam", "b5", 100),
    ];
    store.archive_append_batch(&batch).await.unwrap();
    let got = [stamp("b1", "mam").await, stamp("b2", "offline").await, stamp("b3", "mam").await, stamp("b4", "mam").await];
    assert_eq!(got, [600, 10, 700, 700]);
    assert_eq!(store.archive_get(user("archive-monotonic-2"), "mam", "b5").await.unwrap().unwrap().stamp_us, 100);
    store.import(&[Record::Archive { seq: 1, item: entry("archive-monotonic", "mam", "i1", 300) }]).await.unwrap();
    assert_eq!(stamp("i1", "mam").await, 700, "an import is an append");

    // Stamps later than any so far, each append path followed by another: whatever a
    // backend keeps to skip look-ups, every path must keep it up to date.
    let far = 4_000_000_000_000_000;
    store.archive_append(u, "far", item("f1", far, "x@example.com", b"f"), None).await.unwrap();
    store.archive_append_batch(&[entry("archive-monotonic", "far", "f2", far - 1)]).await.unwrap();
    store.archive_append_batch(&[entry("archive-monotonic", "far", "f3", far + 10)]).await.unwrap();
    store.archive_append(u, "far", item("f4", far + 5, "x@example.com", b"f"), None).await.unwrap();
    store.import(&[Record::Archive { seq: 1, item: entry("archive-monotonic", "far", "f5", far + 20) }]).await.unwrap();
    store.archive_append_batch(&[entry("archive-monotonic", "far", "f6", far + 15)]).await.unwrap();
    let got = [stamp("f2", "far").await, stamp("f4", "far").await, stamp("f6", "far").await];
    assert_eq!(got, [far, far + 10, far + 20]);

    let q = |start_us, end_us| ArchiveQuery { start_us, end_us, ..Default::default() };
    assert_eq!(page(store, u, "mam", q(Some(500), Some(500))).await, (strings(&["a1", "a2"]), true));
    assert_eq!(page(store, u, "mam", q(Some(601), None)).await, (strings(&["b3", "b4", "i1"]), true));
    assert_eq!(page(store, u, "mam", q(None, Some(599))).await, (strings(&["a1", "a2"]), true));
}

async fn archive_paging(store: &Store) {
    let u = user("archive-paging");
    let ids: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
    let items: Vec<(&str, i64, &str)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as i64, "x@example.com"))
        .collect();
    append(store, u, "mam", &items).await;

    let q = |after_id, before_id, limit, last_page| ArchiveQuery {
        after_id,
        before_id,
        limit,
        last_page,
        ..Default::default()
    };
    let all = strings(&["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    assert_eq!(
        page(store, u, "mam", q(None, None, None, false)).await,
        (all.clone(), true),
        "no limit"
    );
    assert_eq!(
        page(store, u, "mam", q(None, None, None, true)).await,
        (all.clone(), true),
        "last page, no limit"
    );
    assert_eq!(
        page(store, u, "mam", q(None, None, Some(7), false)).await,
        (all.clone(), true),
        "limit = total"
    );
    assert_eq!(
        page(store, u, "mam", q(None, None, Some(100), true)).await,
        (all, true),
        "limit > total"
    );

    // Forward.
    assert_eq!(
        page(store, u, "mam", q(None, None, Some(3), false)).await,
        (strings(&["p0", "p1", "p2"]), false)
    );
    assert_eq!(
        page(store, u, "mam", q(Some("p2"), None, Some(3), false)).await,
        (strings(&["p3", "p4", "p5"]), false)
    );
    assert_eq!(
        page(store, u, "mam", q(Some("p5"), None, Some(3), false)).await,
        (strings(&["p6"]), true)
    );
    assert_eq!(
        page(store, u, "mam", q(Some("p2"), None, Some(4), false)).await,
        (strings(&["p3", "p4", "p5", "p6"]), true),
        "page ends exactly at the last item"
    );
    assert_eq!(
        page(store, u, "mam", q(Some("p6"), None, Some(3), false)).await,
        (vec![], true),
        "after the last item"
    );

    // Backward.
    assert_eq!(
        page(store, u, "mam", q(None, None, Some(3), true)).await,
        (strings(&["p4", "p5", "p6"]), false)
    );
    assert_eq!(
        page(store, u, "mam", q(None, Some("p4"), Some(3), false)).await,
        (strings(&["p1", "p2", "p3"]), false)
    );
    assert_eq!(
        page(store, u, "mam", q(None, Some("p1"), Some(3), false)).await,
        (strings(&["p0"]), true)
    );
    assert_eq!(
        page(store, u, "mam", q(None, Some("p3"), Some(3), false)).await,
        (strings(&["p0", "p1", "p2"]), true),
        "page starts exactly at the first item"
    );
    assert_eq!(
        page(store, u, "mam", q(None, Some("p0"), Some(3), false)).await,
        (vec![], true),
        "before the first item"
    );
    assert_eq!(
        page(store, u, "mam", q(None, Some("p4"), Some(3), true)).await,
        (strings(&["p1", "p2", "p3"]), false),
        "last_page with before"
    );

    // Between two items.
    assert_eq!(
        page(store, u, "mam", q(Some("p1"), Some("p5"), None, false)).await,
        (strings(&["p2", "p3", "p4"]), true)
    );
    assert_eq!(
        page(store, u, "mam", q(Some("p1"), Some("p5"), Some(2), false)).await,
        (strings(&["p3", "p4"]), false),
        "before pages backward"
    );
    assert_eq!(
        page(store, u, "mam", q(Some("p1"), Some("p5"), Some(3), false)).await,
        (strings(&["p2", "p3", "p4"]), true)
    );
    assert_eq!(
        page(store, u, "mam", q(Some("p4"), Some("p2"), None, false)).await,
        (vec![], true),
        "crossed bounds"
    );

    // A zero limit returns nothing, and tells whether anything matches.
    assert_eq!(
        page(store, u, "mam", q(None, None, Some(0), false)).await,
        (vec![], false)
    );
    assert_eq!(
        page(store, u, "mam", q(Some("p6"), None, Some(0), false)).await,
        (vec![], true)
    );
}

async fn archive_unknown_ids(store: &Store) {
    let u = user("archive-unknown");
    append(store, u, "mam", &[("a", 1, "x@example.com")]).await;
    append(store, u, "offline", &[("elsewhere", 1, "x@example.com")]).await;
    append(
        store,
        user("archive-unknown-2"),
        "mam",
        &[("theirs", 1, "x@example.com")],
    )
    .await;

    for id in ["missing", "elsewhere", "theirs"] {
        for q in [
            ArchiveQuery {
                after_id: Some(id),
                ..Default::default()
            },
            ArchiveQuery {
                before_id: Some(id),
                limit: Some(5),
                ..Default::default()
            },
        ] {
            let r = store.archive_query(u, "mam", &q).await;
            assert!(
                matches!(r, Err(StorageError::NotFound)),
                "query {q:?} with an id not in this archive: {r:?}"
            );
        }
    }
}

/// Replacing a payload keeps the item's id, stamp and place, and touches nothing else.
async fn archive_replace(store: &Store) {
    let u = user("archive-replace");
    let neighbour = user("archive-replace-2");
    let items = [("r0", 100, "x@example.com"), ("r1", 200, "y@example.com"), ("r2", 300, "x@example.com")];
    append(store, u, "muc", &items).await;
    append(store, neighbour, "muc", &items).await;
    store.archive_replace(u, "muc", "r1", BINARY).await.unwrap();
    let all = store.archive_query(u, "muc", &ArchiveQuery::default()).await.unwrap();
    let got: Vec<(&str, i64, &str, &[u8])> =
        all.items.iter().map(|i| (i.id.as_str(), i.stamp_us, i.with.as_str(), i.payload.as_slice())).collect();
    assert_eq!(
        got,
        [("r0", 100, "x@example.com", &b"r0"[..]), ("r1", 200, "y@example.com", BINARY), ("r2", 300, "x@example.com", &b"r2"[..])],
        "only r1's payload changes"
    );
    let theirs = store.archive_query(neighbour, "muc", &ArchiveQuery::default()).await.unwrap();
    assert_eq!(theirs.items[1].payload, b"r1", "another user's item with the same id is untouched");
    let r = store.archive_replace(u, "muc", "missing", b"x").await;
    assert!(matches!(r, Err(StorageError::NotFound)), "replacing a missing id: {r:?}");
}

async fn archive_delete(store: &Store) {
    let u = user("archive-delete");
    let neighbour = user("archive-delete-2");
    let items = [
        ("d0", 100, "x@example.com"),
        ("d1", 200, "x@example.com"),
        ("d2", 300, "x@example.com"),
        ("d3", 400, "x@example.com"),
        ("d4", 500, "x@example.com"),
        ("d5", 600, "x@example.com"),
    ];
    append(store, u, "offline", &items).await;
    append(store, u, "mam", &items).await;
    append(store, neighbour, "offline", &items).await;

    assert_eq!(
        store
            .archive_delete(
                u,
                "offline",
                ArchiveDelete::Ids(&["d1", "d3", "missing", "d1"])
            )
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        archive_ids(store, u, "offline").await,
        strings(&["d0", "d2", "d4", "d5"])
    );
    assert_eq!(
        store
            .archive_delete(u, "offline", ArchiveDelete::Ids(&[]))
            .await
            .unwrap(),
        0
    );

    assert_eq!(
        store
            .archive_delete(u, "offline", ArchiveDelete::OlderThan(300))
            .await
            .unwrap(),
        1,
        "older than is strict"
    );
    assert_eq!(
        archive_ids(store, u, "offline").await,
        strings(&["d2", "d4", "d5"])
    );
    assert_eq!(
        store
            .archive_delete(u, "offline", ArchiveDelete::OlderThan(0))
            .await
            .unwrap(),
        0
    );

    // A deleted id can be used again; the new item is the newest.
    store
        .archive_append(
            u,
            "offline",
            item("d1", 50, "x@example.com", b"again"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        archive_ids(store, u, "offline").await,
        strings(&["d2", "d4", "d5", "d1"])
    );

    assert_eq!(
        store
            .archive_delete(u, "offline", ArchiveDelete::All)
            .await
            .unwrap(),
        4
    );
    assert_eq!(store.archive_count(u, "offline").await.unwrap(), 0);
    assert_eq!(
        store
            .archive_delete(u, "offline", ArchiveDelete::All)
            .await
            .unwrap(),
        0
    );

    assert_eq!(
        store.archive_count(u, "mam").await.unwrap(),
        6,
        "deletion is per store name"
    );
    assert_eq!(
        store.archive_count(neighbour, "offline").await.unwrap(),
        6,
        "deletion is per user"
    );
}

/// Trimming a list to its newest items, whatever their stamps, and per user and store.
async fn archive_keep_newest(store: &Store) {
    let u = user("archive-trim");
    let neighbour = user("archive-trim-2");
    // Stamps out of order: "newest" is insertion order.
    let items = [("t0", 500, ""), ("t1", 100, ""), ("t2", 400, ""), ("t3", 200, ""), ("t4", 300, "")];
    append(store, u, "pep/n", &items).await;
    append(store, u, "pep/m", &items).await;
    append(store, neighbour, "pep/n", &items).await;

    assert_eq!(store.archive_delete(u, "pep/n", ArchiveDelete::AllButNewest(10)).await.unwrap(), 0, "fewer items than kept");
    assert_eq!(store.archive_delete(u, "pep/n", ArchiveDelete::AllButNewest(5)).await.unwrap(), 0);
    assert_eq!(store.archive_delete(u, "pep/n", ArchiveDelete::AllButNewest(2)).await.unwrap(), 3);
    assert_eq!(archive_ids(store, u, "pep/n").await, strings(&["t3", "t4"]));
    assert_eq!(store.archive_delete(u, "pep/n", ArchiveDelete::AllButNewest(0)).await.unwrap(), 2);
    assert_eq!(store.archive_count(u, "pep/n").await.unwrap(), 0);
    assert_eq!(store.archive_count(u, "pep/m").await.unwrap(), 5, "per store name");
    assert_eq!(store.archive_count(neighbour, "pep/n").await.unwrap(), 5, "per user");
}

/// One item by id, or none.
async fn archive_get(store: &Store) {
    let u = user("archive-get");
    store.archive_append(u, "pep/x", item("g1", 7, "w@example.com", BINARY), None).await.unwrap();
    append(store, u, "pep/x", &[("g2", 8, "")]).await;
    assert_eq!(
        store.archive_get(u, "pep/x", "g1").await.unwrap(),
        Some(ArchiveItem { id: "g1".into(), stamp_us: 7, with: "w@example.com".into(), payload: BINARY.to_vec() })
    );
    assert_eq!(store.archive_get(u, "pep/x", "missing").await.unwrap(), None);
    assert_eq!(store.archive_get(u, "pep/y", "g1").await.unwrap(), None, "per store name");
    assert_eq!(store.archive_get(user("archive-get-2"), "pep/x", "g1").await.unwrap(), None, "per user");
}

async fn isolation(store: &Store) {
    // Same host, same localpart on another host, and a name that would match as a LIKE
    // pattern or a prefix.
    let users = [
        user("iso"),
        UserRef {
            host: OTHER_HOST,
            user: "iso",
        },
        user("iso2"),
        user("is%"),
        UserRef {
            host: "conformance.example.",
            user: "iso",
        },
    ];
    for (n, &u) in users.iter().enumerate() {
        let v = format!("value-{n}");
        store.create_account(u, v.as_bytes()).await.unwrap();
        store.kv_set(u, "s", Some(v.as_bytes())).await.unwrap();
        store
            .map_set(u, "s", "k", Some(v.as_bytes()))
            .await
            .unwrap();
        store
            .archive_append(
                u,
                "s",
                item("id", n as i64, "x@example.com", v.as_bytes()),
                None,
            )
            .await
            .unwrap();
        for _ in 0..n {
            let id = format!("extra-{}", store.archive_count(u, "s").await.unwrap());
            store
                .archive_append(u, "s", item(&id, 0, "x@example.com", b""), None)
                .await
                .unwrap();
        }
    }
    for (n, &u) in users.iter().enumerate() {
        let v = format!("value-{n}").into_bytes();
        assert_eq!(
            store.get_account(u).await.unwrap(),
            Some(v.clone()),
            "{u:?}"
        );
        assert_eq!(
            store.kv_get(u, "s").await.unwrap(),
            Some(v.clone()),
            "{u:?}"
        );
        assert_eq!(
            store.map_all(u, "s").await.unwrap(),
            vec![("k".to_string(), v.clone())],
            "{u:?}"
        );
        assert_eq!(
            store.archive_count(u, "s").await.unwrap(),
            n as u64 + 1,
            "{u:?}"
        );
        let first = store
            .archive_query(
                u,
                "s",
                &ArchiveQuery {
                    limit: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(first.items[0].payload, v, "{u:?}");
    }

    // Store names separate data within a kind, and the kinds are separate from each other.
    let u = users[0];
    assert_eq!(store.kv_get(u, "t").await.unwrap(), None);
    assert_eq!(store.map_get(u, "t", "k").await.unwrap(), None);
    assert_eq!(store.archive_count(u, "t").await.unwrap(), 0);
    store.kv_set(u, "s", None).await.unwrap();
    assert!(
        store.map_get(u, "s", "k").await.unwrap().is_some(),
        "keyval and map of the same name are separate"
    );
    assert_eq!(
        store.archive_count(u, "s").await.unwrap(),
        1,
        "keyval and archive of the same name are separate"
    );
}
