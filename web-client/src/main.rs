//! The page: the views (built with the `page` feature, in which every call on the session
//! goes to the worker).

fn main() {
    jabberwock_web_client::page();
}
