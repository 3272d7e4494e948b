//! Request IDs: Heroku's router gives every request an `X-Request-Id` and logs it with the
//! request; Penny logs it too, so that its lines and the router's can be matched. A request
//! that comes without one (a local run, another proxy) gets one made here. Either way it goes
//! back in the response, and a 5xx page shows it, so a visitor can quote it.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request ID kept, as Heroku's router allows.
const MAX_LEN: usize = 200;

/// The ID a request is logged and answered with: the one the client or the router sent, if
/// it sent one that is 1 to 200 letters, digits and `+/=-_.` (Heroku's own are UUIDs),
/// otherwise a new one.
pub fn of(headers: &HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(X_REQUEST_ID).iter();
    match (sent.next(), sent.next()) {
        (Some(id), None) if is_valid(id.as_bytes()) => id.clone(),
        _ => make(),
    }
}

fn is_valid(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+/=-_.".contains(&b))
}

/// A new ID: 32 hex digits, a random number drawn once per process followed by a count, so
/// that IDs never repeat within a process and, in practice, between dynos. No randomness is
/// drawn per request.
fn make() -> HeaderValue {
    static PROCESS: LazyLock<u64> = LazyLock::new(|| {
        RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()))
    });
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        let word = if i < 16 { *PROCESS } else { count };
        let nibble = (word >> (60 - 4 * (i % 16))) & 0xf;
        *byte = b"0123456789abcdef"[nibble as usize];
    }
    HeaderValue::from_bytes(&id).expect("hex digits are a header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_id_is_kept_and_anything_else_is_replaced_by_a_new_one() {
        let heroku = "f9ed4675-f4d6-4d82-a5a1-43e6f4d28fd0";
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static(heroku));
        assert_eq!(of(&headers), heroku);

        let long = "x".repeat(201);
        for bad in ["", "has space", "quote\"", "new\tline", &long] {
            let mut headers = HeaderMap::new();
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let made = of(&headers);
            assert_ne!(made, bad);
            assert_eq!(made.len(), 32, "{bad:?} is replaced");
        }

        let mut twice = HeaderMap::new();
        twice.append(X_REQUEST_ID, HeaderValue::from_static("one"));
        twice.append(X_REQUEST_ID, HeaderValue::from_static("two"));
        assert_eq!(of(&twice).len(), 32, "two are one too many");
    }

    #[test]
    fn made_ids_are_32_hex_digits_and_never_repeat() {
        let ids: Vec<HeaderValue> = (0..1000).map(|_| of(&HeaderMap::new())).collect();
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
            assert!(is_valid(id.as_bytes()));
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
