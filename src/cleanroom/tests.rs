//! Both sides of the protocol in one process, on loopback TCP.

use std::time::Duration;

use super::frame::Framed;
use super::population::{Member, MemberIdentifier, Population};
use super::protocol::{exchange_totals, intersect, prepare, Matched, Method, Params, Role};
use super::report::{totals, Totals};
use super::tokens::{EcdhSecret, HmacKey};
use super::transport::{connect, Listening};
use super::OverlapError;

/// A population whose member `i` holds `email:{e}` for each `e` in `emails[i]`.
fn population(emails: &[&[u32]]) -> Population {
    let mut p = Population {
        considered: emails.len() as u64,
        ..Population::default()
    };
    for (member, list) in emails.iter().enumerate() {
        p.members.push(Member {
            attributes: Vec::new(),
        });
        for e in *list {
            p.identifiers.push(MemberIdentifier {
                kind: 0,
                value: format!("person{e}@example.com"),
                member,
            });
        }
    }
    p
}

fn params(method: Method, collaboration: &str) -> Params {
    Params {
        method,
        collaboration: collaboration.into(),
        kinds: vec!["email".into()],
        min_group_size: 1,
    }
}

type Side = Result<(Matched, Totals), OverlapError>;

fn run(pop_a: Population, a: Params, pop_b: Population, b: Params) -> (Side, Side) {
    let timeout = Duration::from_secs(20);
    let listening = Listening::bind("127.0.0.1:0").expect("bind");
    let addr = listening.local_addr().expect("addr").to_string();
    let side =
        move |pop: Population, params: Params, role: Role, stream: std::net::TcpStream| -> Side {
            let prepared = prepare(&params, &pop);
            let mut framed = Framed::new(stream);
            let matched = intersect(&mut framed, role, &params, &prepared)?;
            let own = totals(&pop, &matched.shared, matched.min_group_size);
            let peer = exchange_totals(&mut framed, role, &own)?;
            Ok((matched, peer))
        };
    let first = std::thread::spawn(move || {
        let stream = listening.accept(timeout)?;
        side(pop_a, a, Role::First, stream)
    });
    let second = side(
        pop_b,
        b,
        Role::Second,
        connect(&addr, timeout).expect("connect"),
    );
    (first.join().expect("first side"), second)
}

fn ecdh() -> Method {
    Method::Ecdh(EcdhSecret::random())
}

#[test]
fn both_sides_find_their_own_shared_members() {
    // a: members 0..=3; b: members 0..=2. Shared: a0 (via 1), a2 (via 5 and 6 held by two
    // profiles of b), b0, b1, b2.
    let a = population(&[&[1, 2], &[3], &[5, 6], &[7]]);
    let b = population(&[&[1], &[5], &[6, 8], &[9]]);
    for (ma, mb) in [
        (ecdh(), ecdh()),
        (
            Method::Hmac(HmacKey::new(vec![7; 32]).expect("key")),
            Method::Hmac(HmacKey::new(vec![7; 32]).expect("key")),
        ),
    ] {
        let (first, second) = run(a.clone(), params(ma, "c1"), b.clone(), params(mb, "c1"));
        let (first, peer_of_first) = first.expect("first side succeeds");
        let (second, peer_of_second) = second.expect("second side succeeds");
        assert_eq!(first.shared, vec![true, false, true, false]);
        assert_eq!(second.shared, vec![true, true, true, false]);
        assert_eq!(peer_of_first.shared_profiles.count, Some(3));
        assert_eq!(peer_of_second.shared_profiles.count, Some(2));
    }
}

#[test]
fn mismatches_are_refused_on_both_sides_naming_the_field() {
    let (first, second) = run(
        population(&[&[1]]),
        params(ecdh(), "c1"),
        population(&[&[1]]),
        params(ecdh(), "c2"),
    );
    for side in [first, second] {
        let e = side.expect_err("refused").to_string();
        assert!(e.contains("collaboration"), "{e}");
    }
    let (first, second) = run(
        population(&[&[1]]),
        params(Method::Hmac(HmacKey::new(vec![1; 32]).expect("key")), "c"),
        population(&[&[1]]),
        params(Method::Hmac(HmacKey::new(vec![2; 32]).expect("key")), "c"),
    );
    for side in [first, second] {
        let e = side.expect_err("refused").to_string();
        assert!(e.contains("key"), "{e}");
    }
    let (first, second) = run(
        population(&[&[1]]),
        params(ecdh(), "c"),
        population(&[&[1]]),
        params(Method::Hmac(HmacKey::new(vec![2; 32]).expect("key")), "c"),
    );
    for side in [first, second] {
        let e = side.expect_err("refused").to_string();
        assert!(e.contains("protocol"), "{e}");
    }
}
