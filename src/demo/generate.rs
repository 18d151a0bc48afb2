//! Deterministic sample data in idgraph's wire format.
//!
//! [`generate`] builds a realistic population (households, several sources per person,
//! typing variations and a little junk) for demos; [`bench_events`] builds a large,
//! junk-free fixture whose identifiers never collide between people, so resolution is exact.

use chrono::{DateTime, SecondsFormat};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William",
    "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Christopher", "Nancy", "Daniel", "Lisa", "Matthew", "Betty", "Anthony",
    "Margaret", "Mark", "Sandra", "Donald", "Ashley", "Steven", "Kimberly", "Paul", "Emily",
    "Andrew", "Donna", "Joshua", "Michelle", "Kenneth", "Carol", "Kevin", "Amanda", "Brian",
    "Melissa", "George", "Deborah", "Timothy", "Stephanie", "Ronald", "Rebecca", "Jason", "Laura",
    "Edward", "Sharon", "Jeffrey", "Cynthia", "Ryan", "Katherine",
];
#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera",
    "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz",
    "Parker", "Cruz", "Edwards", "Collins", "Reyes",
];
/// Spelling variants a third-party data vendor might use.
#[rustfmt::skip]
const NAME_VARIANTS: &[(&str, &str)] = &[
    ("Katherine", "Catherine"), ("Steven", "Stephen"), ("Jeffrey", "Geoffrey"),
    ("Deborah", "Debra"), ("Michael", "Micheal"), ("Rebecca", "Rebekah"), ("Sarah", "Sara"),
    ("Christopher", "Chris"), ("Robert", "Bob"), ("William", "Bill"), ("Elizabeth", "Liz"),
    ("Jennifer", "Jenifer"), ("Matthew", "Mathew"), ("Anthony", "Tony"), ("Kenneth", "Ken"),
];
#[rustfmt::skip]
const STREETS: &[&str] = &[
    "Oak St", "Maple Ave", "Pine St", "Cedar Ln", "Elm St", "Washington Ave", "Lake Dr",
    "Hillside Rd", "Park Pl", "Main St", "Sunset Blvd", "River Rd", "Highland Ave", "Church St",
    "Mill Rd", "Spring St", "Valley View Dr", "Forest Ave", "Chestnut St", "Willow Way",
];
/// Area codes used for generated phones (all valid US geographic codes).
const AREA_CODES: [u16; 8] = [415, 212, 312, 617, 206, 303, 512, 646];
/// (city, region, postal prefix, index into [`AREA_CODES`]).
#[rustfmt::skip]
const CITIES: &[(&str, &str, &str, usize)] = &[
    ("San Francisco", "CA", "941", 0), ("New York", "NY", "100", 1), ("Chicago", "IL", "606", 2),
    ("Boston", "MA", "021", 3), ("Seattle", "WA", "981", 4), ("Denver", "CO", "802", 5),
    ("Austin", "TX", "787", 6), ("Brooklyn", "NY", "112", 7),
];
/// Placeholder values real systems collect; the service blocklists them.
#[rustfmt::skip]
const JUNK: &[(&str, &str)] = &[
    ("email", "test@test.com"), ("email", "noemail@example.com"), ("phone", "0000000000"),
    ("phone", "1111111111"), ("cookie_id", "undefined"), ("cookie_id", "null"),
    ("cookie_id", "anonymous"),
];
#[rustfmt::skip]
const PAGES: &[&str] = &["/", "/products", "/products/shoes", "/cart", "/account", "/sale"];
/// 2025-01-01T00:00:00Z and 2026-11-01T00:00:00Z (exclusive).
const TS_START: i64 = 1_735_689_600;
const TS_END: i64 = 1_793_491_200;

/// Settings for [`generate`].
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub people: usize,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            people: 3000,
            seed: 42,
        }
    }
}

/// Ground truth of one generated person (for tests and printing example requests).
#[derive(Debug, Clone)]
pub struct Person {
    pub index: usize,
    pub household: usize,
    pub first_name: String,
    pub last_name: String,
    /// Canonical lower-case emails; events sometimes carry capitalised variants.
    pub emails: Vec<String>,
    /// E.164, e.g. `+14152345678`; events carry them typed in per-source formats.
    pub phones: Vec<String>,
    pub customer_id: Option<String>,
    pub loyalty_id: Option<String>,
    /// Mobile device ids, including a household tablet shared with one other member, if any.
    pub devices: Vec<String>,
    pub cookies: Vec<String>,
}

/// Output of [`generate`]: shuffled events plus the people behind them.
#[derive(Debug, Clone)]
pub struct DemoData {
    pub events: Vec<Value>,
    pub people: Vec<Person>,
}

/// Bijective 64-bit mixer (splitmix64 finaliser): distinct inputs give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

/// Identifier values keyed by a slot number: distinct slots give distinct values.
struct Ids {
    seed: u64,
    exchanges: Vec<u16>,
    cap: u64,
}

impl Ids {
    fn new(seed: u64) -> Self {
        // Central-office codes 200-999 except N11 service codes and the fictional 555.
        let exchanges: Vec<u16> = (200..1000).filter(|e| *e != 555 && e % 100 != 11).collect();
        let cap = exchanges.len() as u64 * 10_000;
        Self {
            seed,
            exchanges,
            cap,
        }
    }

    /// E.164 number in `area`; `None` past the numbering space (~7.9M slots).
    fn phone(&self, area: u16, slot: u64) -> Option<String> {
        let cap = self.cap;
        // 48271 is coprime with cap (= 2^7 * 5^4 * 7 * 113), so this permutes 0..cap.
        let rest = (slot < cap).then(|| (slot * 48_271 + mix(self.seed) % cap) % cap)?;
        let exchange = self.exchanges[(rest / 10_000) as usize];
        Some(format!("+1{area}{exchange}{:04}", rest % 10_000))
    }

    /// UUID-like lowercase hex device id (all 64 bits of `hi` are kept, so it is unique).
    fn device(&self, slot: u64) -> String {
        let hi = mix(slot ^ self.seed.rotate_left(17));
        let lo = mix(hi ^ 0x5851_f42d_4c95_7f2d);
        let (a, b, e) = (
            hi >> 32,
            (hi >> 16) & 0xffff,
            (hi & 0xffff) << 32 | lo >> 32,
        );
        let (c, d) = (lo & 0xfff, 0x8000 | (lo >> 50));
        format!("{a:08x}-{b:04x}-4{c:03x}-{d:04x}-{e:012x}")
    }

    /// Web cookie `n` of person `person`.
    fn cookie(&self, person: usize, n: u64) -> String {
        let slot = (n << 40) | person as u64;
        format!("ck_{:016x}", mix(slot ^ self.seed.rotate_left(29)))
    }
}

fn customer_id(person: usize) -> String {
    format!("CUST-{:06}", person + 1)
}

fn loyalty_id(person: usize) -> String {
    format!("LOY-{:08}", 20_000_000 + person * 7)
}

/// Email derived from the name plus the person's index: unique per (style, index).
fn email(style: usize, first: &str, last: &str, index: usize) -> String {
    let (f, l, index) = (first.to_lowercase(), last.to_lowercase(), index + 1);
    match style % 3 {
        0 => format!("{f}.{l}{index}@example.com"),
        1 => format!("{}{l}{index}@mail.example.org", &f[..1]),
        _ => format!("{f}_{l}{index}@inbox.example.net"),
    }
}

/// "alice.smith1@example.com" -> "Alice.Smith1@Example.com".
fn capitalised(email: &str) -> String {
    let (mut prev, mut domain) = ('.', false);
    let mut out = String::with_capacity(email.len());
    for c in email.chars() {
        let start = prev == '@' || (!domain && matches!(prev, '.' | '_'));
        out.push(if start { c.to_ascii_uppercase() } else { c });
        domain |= c == '@';
        prev = c;
    }
    out
}

/// Types an E.164 US number the way a given source tends to.
fn typed_phone(e164: &str, style: u8) -> String {
    let (a, x, l) = (&e164[2..5], &e164[5..8], &e164[8..]);
    match style {
        0 => format!("({a}) {x}-{l}"),
        1 => format!("{a}.{x}.{l}"),
        2 => e164.to_owned(),
        3 => format!("{a}-{x}-{l}"),
        _ => format!("+1 {a} {x} {l}"),
    }
}

/// Adds an identifier, turning the kind into an array when it already has a value.
fn add_id(ids: &mut Map<String, Value>, kind: &str, value: &str) {
    let value = Value::String(value.to_owned());
    match ids.get_mut(kind) {
        None => drop(ids.insert(kind.to_owned(), value)),
        Some(Value::Array(values)) => values.push(value),
        Some(old) => *old = Value::Array(vec![old.take(), value]),
    }
}

fn ids_of(pairs: &[(&str, &str)]) -> Map<String, Value> {
    let mut ids = Map::new();
    for (kind, value) in pairs {
        add_id(&mut ids, kind, value);
    }
    ids
}

fn event(
    id: String,
    source: &str,
    kind: &str,
    rng: &mut StdRng,
    ids: Map<String, Value>,
) -> Map<String, Value> {
    let ts = DateTime::from_timestamp(rng.gen_range(TS_START..TS_END), 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default();
    let mut ev = Map::new();
    ev.insert("event_id".into(), Value::String(id));
    ev.insert("source".into(), source.into());
    ev.insert("timestamp".into(), ts.into());
    ev.insert("type".into(), kind.into());
    ev.insert("identifiers".into(), Value::Object(ids));
    ev
}

fn address(rng: &mut StdRng, city: usize) -> Value {
    let (name, region, postal, _) = CITIES[city];
    let street = format!("{} {}", rng.gen_range(1..2000), pick(rng, STREETS));
    let postal = format!("{postal}{:02}", rng.gen_range(1..60));
    json!({ "street": street, "city": name, "postal_code": postal, "region": region, "country": "US" })
}

/// Collects [`generate`]'s events and owns its random source.
struct Sink {
    rng: StdRng,
    events: Vec<Value>,
}

impl Sink {
    /// Appends an event with a fresh id, a random timestamp and optional traits/properties.
    fn emit(
        &mut self,
        source: &str,
        kind: &str,
        ids: Map<String, Value>,
        extra: &[(&str, &Value)],
    ) {
        let id = format!("demo-{}", self.events.len());
        let mut ev = event(id, source, kind, &mut self.rng, ids);
        for (key, value) in extra {
            ev.insert((*key).to_owned(), (*value).clone());
        }
        self.events.push(Value::Object(ev));
    }

    /// One of the person's emails, capitalised with probability `caps`.
    fn email(&mut self, p: &Person, caps: f64) -> String {
        let e = &p.emails[self.rng.gen_range(0..p.emails.len())];
        let caps = self.rng.gen_bool(caps);
        if caps {
            capitalised(e)
        } else {
            e.clone()
        }
    }

    /// With ~3% probability adds a placeholder value the service must blocklist.
    fn junk(&mut self, ids: &mut Map<String, Value>) {
        if self.rng.gen_bool(0.03) {
            let (kind, value) = pick(&mut self.rng, JUNK);
            add_id(ids, kind, value);
        }
    }
}

/// Generate a realistic sample: each person appears in several sources.
pub fn generate(config: &DemoConfig) -> DemoData {
    let (mut rng, ids) = (StdRng::seed_from_u64(config.seed), Ids::new(config.seed));
    let (mut people, mut extras) = (Vec::with_capacity(config.people), Vec::new());
    let mut household = 0;
    while people.len() < config.people {
        let size = pick(&mut rng, &[1, 1, 1, 2, 2, 2, 2, 3, 3, 4]);
        let size = size.min(config.people - people.len());
        let (city, family) = (rng.gen_range(0..CITIES.len()), pick(&mut rng, LAST_NAMES));
        let home = address(&mut rng, city);
        for _ in 0..size {
            let index = people.len();
            let first = pick(&mut rng, FIRST_NAMES);
            let other = pick(&mut rng, LAST_NAMES);
            let last = if rng.gen_bool(0.8) { family } else { other };
            let style = rng.gen_range(0..3);
            let emails = pick(&mut rng, &[1, 1, 1, 2, 2]);
            let emails = (0..emails).map(|n| email(style + n, first, last, index));
            let (slot, local, moved) = (index as u64, CITIES[city].3, rng.gen_bool(0.2));
            let area = AREA_CODES[if moved { rng.gen_range(0..8) } else { local }];
            let phones = (0..pick(&mut rng, &[0, 1, 1, 1, 1, 1, 2, 2]))
                .filter_map(|j| ids.phone(area, 2 * slot + j));
            people.push(Person {
                index,
                household,
                first_name: first.to_owned(),
                last_name: last.to_owned(),
                emails: emails.collect(),
                phones: phones.collect(),
                customer_id: rng.gen_bool(0.7).then(|| customer_id(index)),
                loyalty_id: rng.gen_bool(0.4).then(|| loyalty_id(index)),
                devices: (0..rng.gen_range(1..=2))
                    .map(|j| ids.device(4 * slot + j))
                    .collect(),
                cookies: (0..rng.gen_range(1..=3))
                    .map(|n| ids.cookie(index, n))
                    .collect(),
            });
            let (y, m) = (rng.gen_range(1950..2006), rng.gen_range(1..=12));
            let birth_date = format!("{y}-{m:02}-{:02}", rng.gen_range(1..=28));
            extras.push((birth_date, home.clone()));
        }
        // ~5% of all households (8% of multi-member ones) share a tablet between two members.
        if size >= 2 && rng.gen_bool(0.08) {
            let start = people.len() - size;
            let tablet = ids.device(4 * start as u64 + 3);
            people[start].devices.push(tablet.clone());
            people[start + 1].devices.push(tablet);
        }
        household += 1;
    }

    let mut s = Sink {
        rng,
        events: Vec::with_capacity(config.people * 9),
    };
    for (p, (birth_date, home)) in people.iter().zip(&extras) {
        let (first, last) = (p.first_name.as_str(), p.last_name.as_str());
        // CRM: the customer record, sometimes updated later (with the other email, if any).
        if let Some(cid) = &p.customer_id {
            let traits = json!({ "first_name": first, "last_name": last,
                "birth_date": birth_date, "address": home });
            for n in 0..pick(&mut s.rng, &[1, 1, 1, 1, 2]) {
                let e = &p.emails[n % p.emails.len()];
                let mut m = ids_of(&[("customer_id", cid), ("email", e)]);
                if let Some(phone) = p.phones.first() {
                    add_id(&mut m, "phone", &typed_phone(phone, 0));
                }
                let kind = if n == 0 { "identify" } else { "profile_update" };
                s.emit("crm", kind, m, &[("traits", &traits)]);
            }
        }
        // Web: an anonymous page view per cookie, then sometimes a login with an email.
        for cookie in &p.cookies {
            let mut m = ids_of(&[("cookie_id", cookie)]);
            s.junk(&mut m);
            let page = json!({ "url": pick(&mut s.rng, PAGES) });
            s.emit("web", "page_view", m, &[("properties", &page)]);
            if s.rng.gen_bool(0.5) {
                let mut m = ids_of(&[("cookie_id", cookie), ("email", &s.email(p, 0.3))]);
                s.junk(&mut m);
                s.emit("web", "identify", m, &[]);
            }
        }
        // Mobile: app opens per device; logins tie a device to the customer id.
        for device in &p.devices {
            let platform = ["ios", "android"][usize::from(device.as_bytes()[0] % 2)];
            let os = json!({ "platform": platform });
            let m = ids_of(&[("device_id", device)]);
            s.emit("mobile", "app_open", m, &[("properties", &os)]);
            if let (Some(cid), true) = (&p.customer_id, s.rng.gen_bool(0.5)) {
                let m = ids_of(&[("device_id", device), ("customer_id", cid)]);
                s.emit("mobile", "login", m, &[("properties", &os)]);
            }
        }
        // Point of sale: purchases with the loyalty card, phone typed by the cashier.
        if let Some(loyalty) = &p.loyalty_id {
            for _ in 0..s.rng.gen_range(1..=2) {
                let mut m = ids_of(&[("loyalty_id", loyalty)]);
                if let (Some(phone), true) = (p.phones.first(), s.rng.gen_bool(0.7)) {
                    add_id(&mut m, "phone", &typed_phone(phone, 1));
                }
                let amount = f64::from(s.rng.gen_range(199..25_000u32)) / 100.0;
                let props = json!({ "amount": amount, "currency": "USD" });
                s.emit("pos", "purchase", m, &[("properties", &props)]);
            }
        }
        // Contact centre: the caller's number plus the account they asked about.
        if let (Some(phone), true) = (p.phones.last(), s.rng.gen_bool(0.3)) {
            let mut m = ids_of(&[("phone", &typed_phone(phone, 2))]);
            if let Some(cid) = &p.customer_id {
                add_id(&mut m, "customer_id", cid);
            }
            let names = json!({ "first_name": first, "last_name": last });
            s.emit("contact_center", "call", m, &[("traits", &names)]);
        }
        // Email marketing opens.
        for _ in 0..s.rng.gen_range(0..=2) {
            let m = ids_of(&[("email", &s.email(p, 0.0))]);
            s.emit("email", "email_open", m, &[]);
        }
        // Third-party enrichment: sometimes a variant spelling or an old address.
        if s.rng.gen_bool(0.25) {
            let mut m = ids_of(&[("email", &s.email(p, 0.5))]);
            if let (Some(phone), true) = (p.phones.first(), s.rng.gen_bool(0.3)) {
                add_id(&mut m, "phone", &typed_phone(phone, s.rng.gen_range(3..=4)));
            }
            s.junk(&mut m);
            let variant = NAME_VARIANTS.iter().find(|(n, _)| *n == first);
            let first = match (s.rng.gen_bool(0.3), variant) {
                (true, Some((_, v))) => (*v).to_owned(),
                (true, None) => first.to_uppercase(),
                (false, _) => first.to_owned(),
            };
            let (city, old) = (s.rng.gen_range(0..CITIES.len()), s.rng.gen_bool(0.3));
            let addr = if old {
                address(&mut s.rng, city)
            } else {
                home.clone()
            };
            let traits = json!({ "first_name": first, "last_name": last, "address": addr });
            s.emit("third_party", "enrichment", m, &[("traits", &traits)]);
        }
    }
    s.events.shuffle(&mut s.rng);
    DemoData {
        events: s.events,
        people,
    }
}

/// Bench fixture: exactly `events` events, each carrying 3 to 5 identifiers, drawn from
/// `events / 4` (at least 1) people, so the same person recurs (~4 events per person,
/// identifiers reused across a person's events, new cookies sometimes). Deterministic in
/// `seed`; identifiers never collide between people; no junk; traits are names only.
pub fn bench_events(events: usize, seed: u64) -> Vec<Value> {
    bench_with_owners(events, seed).0
}

/// [`bench_events`] plus the index of the person behind each event.
fn bench_with_owners(events: usize, seed: u64) -> (Vec<Value>, Vec<usize>) {
    BenchStream::new(events, (events / 4).max(1), seed, false).unzip()
}

/// The bench fixture as a stream, for populations too large to hold: `events` events of
/// `people` people (the same rules as [`bench_events`], which is this stream with
/// `events / 4` people and no addresses). With `addresses`, an event that carries names
/// also carries the person's postal address (one per person, derived from it, so people
/// who draw the same one form households). Yields each event with its person's index.
///
/// People are derived from `(seed, index)` on demand (only a cookie counter is stored), and
/// only the identifiers an event carries are formatted, which keeps 10M events fast.
pub struct BenchStream {
    rng: StdRng,
    ids: Ids,
    seed: u64,
    people: usize,
    extra_cookies: Vec<u16>,
    next: usize,
    events: usize,
    addresses: bool,
}

impl BenchStream {
    pub fn new(events: usize, people: usize, seed: u64, addresses: bool) -> BenchStream {
        let people = people.max(1);
        BenchStream {
            rng: StdRng::seed_from_u64(seed),
            ids: Ids::new(seed),
            seed,
            people,
            extra_cookies: vec![0u16; people],
            next: 0,
            events,
            addresses,
        }
    }

    /// The email [`BenchStream`] gives person `p` first (every person has one; a lookup
    /// benchmark asks for it).
    pub fn first_email(&self, p: usize) -> String {
        let h = mix(p as u64 ^ self.seed.rotate_left(41));
        let first = FIRST_NAMES[(h % 60) as usize];
        let last = LAST_NAMES[(h >> 8) as usize % 60];
        email((h >> 24) as usize % 3, first, last, p)
    }

    /// Person `p`'s first and last name.
    pub fn name(&self, p: usize) -> (&'static str, &'static str) {
        let h = mix(p as u64 ^ self.seed.rotate_left(41));
        (
            FIRST_NAMES[(h % 60) as usize],
            LAST_NAMES[(h >> 8) as usize % 60],
        )
    }
}

impl Iterator for BenchStream {
    type Item = (Value, usize);

    fn next(&mut self) -> Option<(Value, usize)> {
        #[rustfmt::skip]
        const KINDS: &[(&str, &str)] = &[
            ("web", "identify"), ("mobile", "login"), ("crm", "identify"), ("web", "login"),
            ("pos", "purchase"), ("contact_center", "call"), ("email", "email_open"),
        ];
        const POOL: [&str; 5] = ["phone", "email", "customer_id", "loyalty_id", "device_id"];
        if self.next >= self.events {
            return None;
        }
        let n = self.next;
        self.next += 1;
        let (rng, ids, seed) = (&mut self.rng, &self.ids, self.seed);
        let p = rng.gen_range(0..self.people);
        let h = mix(p as u64 ^ seed.rotate_left(41));
        let first = FIRST_NAMES[(h % 60) as usize];
        let last = LAST_NAMES[(h >> 8) as usize % 60];
        let area = AREA_CODES[(h >> 16) as usize % 8];
        // Pool: 1-2 phones (none once numbers run out), 1-2 emails (2 without phones),
        // customer id, loyalty id for half, one device, then 1 + extra cookies.
        let phones = u64::from(2 * p as u64 + 1 < ids.cap) * (1 + (h >> 20) % 2);
        let emails = 1 + u64::from(phones == 0 || (h >> 21) & 3 == 0);
        let (mut pool, mut fixed) = ([("", 0u64); 7], 0);
        for (kind, count) in POOL.into_iter().zip([phones, emails, 1, (h >> 23) % 2, 1]) {
            for j in 0..count {
                pool[fixed] = (kind, j);
                fixed += 1;
            }
        }
        if rng.gen_bool(0.15) {
            self.extra_cookies[p] = self.extra_cookies[p].saturating_add(1);
        }
        let total = fixed + 1 + usize::from(self.extra_cookies[p]);
        // 3 to 5 distinct pool entries (rejection sampling: no allocation per event).
        let (mut m, mut chosen) = (Map::new(), [usize::MAX; 5]);
        for slot in 0..rng.gen_range(3..=5).min(total) {
            let mut i = rng.gen_range(0..total);
            while chosen.contains(&i) {
                i = rng.gen_range(0..total);
            }
            chosen[slot] = i;
            let cookie = ("cookie_id", i.saturating_sub(fixed) as u64);
            let (kind, j) = if i < fixed { pool[i] } else { cookie };
            let value = match kind {
                "phone" => ids.phone(area, 2 * p as u64 + j).unwrap_or_default(),
                "email" => email((h >> 24) as usize % 3 + j as usize, first, last, p),
                "customer_id" => customer_id(p),
                "loyalty_id" => loyalty_id(p),
                "device_id" => ids.device(4 * p as u64),
                _ => ids.cookie(p, j),
            };
            add_id(&mut m, kind, &value);
        }
        let (source, kind) = pick(rng, KINDS);
        let mut ev = event(format!("bench-{seed}-{n}"), source, kind, rng, m);
        if rng.gen_bool(0.2) {
            let mut names = json!({ "first_name": first, "last_name": last });
            if self.addresses {
                let city = (h >> 28) as usize % CITIES.len();
                names["address"] = address(&mut StdRng::seed_from_u64(h), city);
            }
            ev.insert("traits".into(), names);
        }
        Some((Value::Object(ev), p))
    }
}

/// What a support agent would type to find generated person `i` of [`search_person`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchKeys {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
}

/// One CRM record of person `i` (1 event = 1 profile): name, email, phone, loyalty id and
/// a postal address, all derived from `(seed, i)`, with identifiers unique per person.
/// Used by the search benchmark to build large populations without holding them.
pub fn search_person(ids: &SearchIds, i: usize) -> (Value, SearchKeys) {
    let h = mix(i as u64 ^ ids.0.seed.rotate_left(7));
    let first = FIRST_NAMES[(h % 60) as usize];
    let last = LAST_NAMES[(h >> 8) as usize % 60];
    let city = (h >> 16) as usize % CITIES.len();
    let phone = ids
        .0
        .phone(AREA_CODES[CITIES[city].3], i as u64)
        .unwrap_or_default();
    let email = email((h >> 24) as usize % 3, first, last, i);
    let mut rng = StdRng::seed_from_u64(h);
    let mut m = Map::new();
    add_id(&mut m, "email", &email);
    if !phone.is_empty() {
        add_id(&mut m, "phone", &phone);
    }
    add_id(&mut m, "loyalty_id", &loyalty_id(i));
    let mut ev = event(
        format!("search-{}-{i}", ids.0.seed),
        "crm",
        "identify",
        &mut rng,
        m,
    );
    let traits = json!({
        "first_name": first,
        "last_name": last,
        "address": address(&mut rng, city),
    });
    ev.insert("traits".into(), traits);
    let keys = SearchKeys {
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        email,
        phone,
    };
    (Value::Object(ev), keys)
}

/// The identifier space of [`search_person`] for one seed.
pub struct SearchIds(Ids);

impl SearchIds {
    pub fn new(seed: u64) -> Self {
        SearchIds(Ids::new(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    /// Every identifier value of an event, arrays flattened.
    fn values(ev: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for v in ev["identifiers"].as_object().expect("identifiers").values() {
            let list = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
            out.extend(list.iter().map(|v| v.as_str().expect("string").to_owned()));
        }
        out
    }

    #[test]
    fn deterministic_in_seed() {
        let run = |seed| generate(&DemoConfig { people: 300, seed }).events;
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        assert_eq!(bench_events(500, 9), bench_events(500, 9));
        assert_ne!(bench_events(500, 9), bench_events(500, 10));
    }

    #[test]
    fn generate_is_well_formed_with_some_junk() {
        let data = generate(&DemoConfig::default());
        assert_eq!(data.people.len(), 3000);
        let per_person = data.events.len() / 300;
        assert!(
            (70..=90).contains(&per_person),
            "{per_person} per 10 people"
        );
        let sources = "web mobile crm pos contact_center email third_party";
        let mut event_ids = HashSet::new();
        for ev in &data.events {
            assert!(event_ids.insert(ev["event_id"].to_string()));
            let source = ev["source"].as_str().expect("source");
            assert!(sources.split(' ').any(|s| s == source));
            let ts = ev["timestamp"].as_str().expect("timestamp");
            let t = DateTime::parse_from_rfc3339(ts).expect("rfc3339");
            assert!((TS_START..TS_END).contains(&t.timestamp()) && ts.ends_with('Z'));
            assert!(ev["type"].is_string() && !values(ev).is_empty());
        }
        let first: HashSet<_> = data.events[..20].iter().map(|e| &e["source"]).collect();
        assert!(first.len() > 2, "events are shuffled");
        let junk: HashSet<&str> = JUNK.iter().map(|(_, v)| *v).collect();
        let junky = |e: &&Value| values(e).iter().any(|v| junk.contains(v.as_str()));
        let junk_events = data.events.iter().filter(junky).count();
        assert!((50..600).contains(&junk_events), "{junk_events}");
        assert_eq!(bench_events(5000, 1).iter().filter(junky).count(), 0);
        // Identifiers are unique per person (the shared tablet aside) and phones look valid.
        let mut owner = HashMap::new();
        for p in &data.people {
            for phone in &p.phones {
                let area: u16 = phone[2..5].parse().expect("area");
                let exchange: u16 = phone[5..8].parse().expect("exchange");
                assert!(phone.len() == 12 && AREA_CODES.contains(&area));
                assert!(exchange >= 200 && exchange != 555 && exchange % 100 != 11);
            }
            let ids = [&p.emails, &p.phones, &p.cookies];
            let ids = ids.into_iter().flatten().chain(&p.customer_id);
            for v in ids.chain(&p.loyalty_id) {
                assert_eq!(owner.insert(v.clone(), p.index), None, "{v} reused");
            }
        }
        assert_eq!(typed_phone("+14152345678", 0), "(415) 234-5678");
        let caps = capitalised("al.smith1@mail.example.org");
        assert_eq!(caps, "Al.Smith1@Mail.example.org");
    }

    #[test]
    fn households_share_addresses_and_some_share_a_tablet() {
        let data = generate(&DemoConfig {
            people: 600,
            seed: 6,
        });
        let mut by_email = HashMap::new();
        for p in &data.people {
            by_email.extend(p.emails.iter().map(|e| (e.as_str(), p)));
        }
        let mut homes: HashMap<usize, (HashSet<String>, HashSet<usize>)> = HashMap::new();
        for ev in data.events.iter().filter(|e| e["source"] == "crm") {
            let p = by_email[ev["identifiers"]["email"].as_str().expect("email")];
            let home = homes.entry(p.household).or_default();
            home.0.insert(ev["traits"]["address"].to_string());
            home.1.insert(p.index);
        }
        assert!(homes.values().all(|(addresses, _)| addresses.len() == 1));
        let shared = homes.values().filter(|(_, members)| members.len() > 1);
        assert!(shared.count() > 20);
        let mut users: HashMap<&str, usize> = HashMap::new();
        for d in data.people.iter().flat_map(|p| &p.devices) {
            *users.entry(d).or_default() += 1;
        }
        assert!(users.values().any(|n| *n == 2) && users.values().all(|n| *n <= 2));
    }

    #[test]
    fn bench_events_shape_and_no_collisions() {
        let events = bench_events(1000, 7);
        assert_eq!(events.len(), 1000);
        assert!(events.iter().all(|ev| (3..=5).contains(&values(ev).len())));
        let (events, owners) = bench_with_owners(20_000, 7);
        let mut owner_of = HashMap::new();
        for (ev, p) in events.iter().zip(&owners) {
            for v in values(ev) {
                assert_eq!(*owner_of.entry(v).or_insert(p), p, "identifier shared");
            }
        }
        let people = owners.iter().collect::<HashSet<_>>().len();
        assert!((4500..=5000).contains(&people), "{people}");
        assert!(bench_events(1, 0).len() == 1 && bench_events(0, 0).is_empty());
    }
}
