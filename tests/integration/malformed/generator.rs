//! The seeded generator of malformed requests. Case `i` of endpoint `e` is
//! a function of (seed, e, i) alone, so a printed seed replays every case
//! whatever the scheduling. Each case starts from a plausible request and
//! breaks one thing: the request line, header syntax or size, framing,
//! content type, credentials, query, or body (control characters, invalid
//! UTF-8, bad percent-encoding, truncated JWTs, huge or deeply nested JSON).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::junk::{
    base62, invalid_json, junk_authorization, junk_form, junk_json, junk_value, path_id,
    random_bytes,
};
use super::raw::Request;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Form,
    Json,
}

/// A row of the README's endpoint table.
pub struct Endpoint {
    pub paths: &'static [&'static str],
    pub methods: &'static [&'static str],
    pub body: Body,
    pub admin: bool,
}

const GET: &[&str] = &["GET", "HEAD"];
const POST: &[&str] = &["POST"];

pub const ENDPOINTS: &[Endpoint] = &[
    public(&["/.well-known/openid-configuration"], GET, Body::None),
    public(
        &["/.well-known/oauth-authorization-server"],
        GET,
        Body::None,
    ),
    public(&["/oauth/jwks"], GET, Body::None),
    public(&["/oauth/token"], POST, Body::Form),
    public(&["/oauth/introspect"], POST, Body::Form),
    public(&["/oauth/revoke"], POST, Body::Form),
    public(&["/oauth/authorize"], &["GET", "POST"], Body::Form),
    public(&["/healthz"], GET, Body::None),
    public(&["/readyz"], GET, Body::None),
    public(&["/metrics"], GET, Body::None),
    admin(&["/admin/v1/whoami"], GET),
    admin(&["/admin/v1/keys"], GET),
    admin(&["/admin/v1/keys/rotate"], POST),
    admin(&["/admin/v1/audit"], GET),
    admin(
        &[
            "/admin/v1/clients",
            "/admin/v1/clients/{id}",
            "/admin/v1/clients/{id}/secret",
        ],
        &["GET", "POST", "PATCH", "DELETE"],
    ),
    admin(
        &[
            "/admin/v1/service-users",
            "/admin/v1/service-users/{id}",
            "/admin/v1/service-users/{id}/keys",
            "/admin/v1/service-users/{id}/keys/{id}",
        ],
        &["GET", "POST", "DELETE"],
    ),
    public(&["/admin/v1/openapi.json"], GET, Body::None),
];

const fn public(
    paths: &'static [&'static str],
    methods: &'static [&'static str],
    body: Body,
) -> Endpoint {
    Endpoint {
        paths,
        methods,
        body,
        admin: false,
    }
}

const fn admin(paths: &'static [&'static str], methods: &'static [&'static str]) -> Endpoint {
    Endpoint {
        paths,
        methods,
        body: Body::Json,
        admin: true,
    }
}

/// Real credentials, mixed into some cases so that malformed content also
/// reaches the parsers behind authentication.
pub struct Credentials {
    pub admin_token: String,
    pub client_id: String,
    pub client_secret: String,
}

pub struct Generator<'a> {
    pub seed: u64,
    pub credentials: &'a Credentials,
}

/// A request under construction; `finish` frames it.
struct Draft {
    method: Vec<u8>,
    target: Vec<u8>,
    version: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    /// Framing already broken by hand: send `raw` as it is.
    raw: Option<Vec<u8>>,
    keep_alive: bool,
    chunked: bool,
}

impl Generator<'_> {
    /// Case `index` of `ENDPOINTS[endpoint]`, and what it breaks.
    pub fn case(&self, endpoint: usize, index: u64) -> (Request, &'static str) {
        let mixed =
            self.seed ^ ((endpoint as u64) << 48) ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let rng = &mut StdRng::seed_from_u64(mixed);
        let endpoint = &ENDPOINTS[endpoint];
        let mut draft = self.plausible(rng, endpoint);
        let broken = match rng.gen_range(0..100) {
            0..=7 => bad_method(rng, &mut draft),
            8..=15 => bad_target(rng, &mut draft),
            16..=19 => bad_version(rng, &mut draft),
            20..=29 => bad_header_syntax(rng, &mut draft),
            30..=33 => huge_headers(rng, &mut draft),
            34..=43 => bad_framing(rng, &mut draft),
            44..=51 => bad_content_type(rng, &mut draft),
            52..=61 => bad_authorization(rng, &mut draft),
            62..=69 => bad_query(rng, &mut draft),
            70..=84 => self.bad_body(rng, endpoint, &mut draft, false),
            _ => self.bad_body(rng, endpoint, &mut draft, true),
        };
        (draft.finish(), broken)
    }

    fn plausible(&self, rng: &mut StdRng, endpoint: &Endpoint) -> Draft {
        let method = *endpoint.methods.choose(rng).expect("methods");
        let path = endpoint.paths.choose(rng).expect("paths");
        let mut target = Vec::new();
        for (i, part) in path.split("{id}").enumerate() {
            if i > 0 {
                target.extend(path_id(rng));
            }
            target.extend(part.as_bytes());
        }
        let mut draft = Draft {
            method: method.as_bytes().to_vec(),
            target,
            version: b"HTTP/1.1".to_vec(),
            headers: vec![(b"Host".to_vec(), b"127.0.0.1".to_vec())],
            body: Vec::new(),
            raw: None,
            keep_alive: true,
            chunked: false,
        };
        match endpoint.body {
            Body::Form if method == "POST" => {
                draft.header("Content-Type", b"application/x-www-form-urlencoded");
                draft.body = junk_form(rng);
            }
            Body::Json if method != "GET" && method != "DELETE" => {
                draft.header("Content-Type", b"application/json");
                draft.body = junk_json(rng);
            }
            _ => {}
        }
        if endpoint.admin && rng.gen_bool(0.3) {
            draft.header("Authorization", junk_authorization(rng).as_slice());
        }
        draft
    }

    /// A well-framed request whose content is wrong. With `authenticated`,
    /// it carries real credentials, and then its body is never a valid
    /// document (so no case rotates keys or changes a client).
    fn bad_body(
        &self,
        rng: &mut StdRng,
        endpoint: &Endpoint,
        draft: &mut Draft,
        authenticated: bool,
    ) -> &'static str {
        draft.chunked = rng.gen_bool(0.1);
        if authenticated && endpoint.admin {
            let token = format!("Bearer {}", self.credentials.admin_token);
            draft.set_header("Authorization", token.as_bytes());
            if draft.method != b"GET" && draft.method != b"HEAD" {
                draft.set_header("Content-Type", b"application/json");
                draft.body = invalid_json(rng);
            } else {
                bad_query(rng, draft);
            }
            return "admin token, malformed content";
        }
        if authenticated && endpoint.body == Body::Form {
            let credentials = format!(
                "{}:{}",
                self.credentials.client_id, self.credentials.client_secret
            );
            let basic = format!("Basic {}", STANDARD.encode(credentials));
            draft.method = b"POST".to_vec();
            draft.set_header("Authorization", basic.as_bytes());
            draft.set_header("Content-Type", b"application/x-www-form-urlencoded");
            draft.body = junk_form(rng);
            return "client credentials, malformed form";
        }
        match endpoint.body {
            Body::Form => draft.body = junk_form(rng),
            Body::Json => draft.body = junk_json(rng),
            Body::None => draft.body = random_bytes(rng, 0..2048),
        }
        "malformed body"
    }
}

impl Draft {
    fn header(&mut self, name: &str, value: &[u8]) {
        self.headers
            .push((name.as_bytes().to_vec(), value.to_vec()));
    }

    fn set_header(&mut self, name: &str, value: &[u8]) {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()));
        self.header(name, value);
    }

    /// Breaks the request beyond what a kept-alive connection can survive:
    /// the connection is closed after it.
    fn one_shot(&mut self) {
        self.keep_alive = false;
    }

    fn finish(mut self) -> Request {
        let head = self.method.eq_ignore_ascii_case(b"HEAD");
        if let Some(raw) = self.raw {
            return Request {
                bytes: raw,
                keep_alive: false,
                head,
            };
        }
        if !self.keep_alive {
            self.header("Connection", b"close");
        }
        let mut bytes = self.head();
        if self.chunked {
            bytes.extend(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in self.body.chunks(1000) {
                bytes.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
                bytes.extend(chunk);
                bytes.extend(b"\r\n");
            }
            bytes.extend(b"0\r\n\r\n");
        } else {
            if !self.body.is_empty() || self.method == b"POST" {
                bytes.extend(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
            }
            bytes.extend(b"\r\n");
            bytes.extend(&self.body);
        }
        Request {
            bytes,
            keep_alive: self.keep_alive,
            head,
        }
    }

    /// The request line and headers, without the framing headers and the
    /// blank line that ends the head.
    fn head(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.body.len() + 512);
        bytes.extend(&self.method);
        bytes.push(b' ');
        bytes.extend(&self.target);
        if !self.version.is_empty() {
            bytes.push(b' ');
            bytes.extend(&self.version);
        }
        bytes.extend(b"\r\n");
        for (name, value) in &self.headers {
            bytes.extend(name);
            bytes.extend(b": ");
            bytes.extend(value);
            bytes.extend(b"\r\n");
        }
        bytes
    }
}

fn bad_method(rng: &mut StdRng, draft: &mut Draft) -> &'static str {
    draft.one_shot();
    draft.method = match rng.gen_range(0..8) {
        0 => base62(rng, 1..16).into_bytes(),
        1 => base62(rng, 1000..3000).into_bytes(),
        2 => b"get".to_vec(),
        3 => b"G\x00ET".to_vec(),
        4 => b"".to_vec(),
        5 => b"P\xc3\xb6ST".to_vec(),
        6 => [
            "PUT", "OPTIONS", "TRACE", "CONNECT", "PATCH", "DELETE", "HEAD",
        ]
        .choose(rng)
        .expect("methods")
        .as_bytes()
        .to_vec(),
        _ => b"POST\tGET".to_vec(),
    };
    "bad method"
}

fn bad_target(rng: &mut StdRng, draft: &mut Draft) -> &'static str {
    draft.one_shot();
    let path = std::mem::take(&mut draft.target);
    draft.target = match rng.gen_range(0..10) {
        0 => [&path[..], b"%00"].concat(),
        1 => [&path[..], b" x"].concat(),
        2 => [&path[..], b"\x01\x7f"].concat(),
        3 => [b"http://evil.example".as_slice(), &path].concat(),
        4 => b"*".to_vec(),
        5 => [b"/".as_slice(), &path, b"/../", &path].concat(),
        6 => [
            &path[..],
            b"/",
            "a".repeat(rng.gen_range(9000..20_000)).as_bytes(),
        ]
        .concat(),
        7 => [&path[..], b"\xff\xfe"].concat(),
        8 => [&path[..], b"#fragment"].concat(),
        _ => Vec::new(),
    };
    "bad request target"
}

fn bad_version(rng: &mut StdRng, draft: &mut Draft) -> &'static str {
    draft.one_shot();
    draft.version = [
        "HTTP/1.2",
        "HTTP/0.9",
        "http/1.1",
        "HTTP/1.1 x",
        "",
        "HTTP/11",
        "HTTP/1.1\x00",
    ]
    .choose(rng)
    .expect("versions")
    .as_bytes()
    .to_vec();
    "bad version"
}

fn bad_header_syntax(rng: &mut StdRng, draft: &mut Draft) -> &'static str {
    draft.one_shot();
    let (name, value): (&[u8], &[u8]) = match rng.gen_range(0..9) {
        0 => (b"Bad Header", b"x"),
        1 => (b"NoColon\r\nX", b"y"),
        2 => (b"X-Folded", b"a\r\n  folded"),
        3 => (b"X-Nul", b"a\x00b"),
        4 => (b"X-Cr", b"a\rb"),
        5 => (b"", b"empty name"),
        6 => (b"X-\xc3\xa9", b"non-ASCII name"),
        7 => (b"Host", b"second.example"),
        _ => (b"Content-Length", b"7"),
    };
    draft.headers.push((name.to_vec(), value.to_vec()));
    "bad header syntax"
}

fn huge_headers(rng: &mut StdRng, draft: &mut Draft) -> &'static str {
    draft.one_shot();
    if rng.gen_bool(0.5) {
        let value = "v".repeat(rng.gen_range(10_000..40_000));
        draft.header("X-Huge", value.as_bytes());
    } else {
        for i in 0..rng.gen_range(100..150) {
            draft.header(&format!("X-Many-{i}"), b"x");
        }
    }
    "huge headers"
}

fn bad_framing(rng: &mut StdRng, draft: &mut Draft) -> &'static str {
    draft.one_shot();
    if draft.body.is_empty() {
        draft.body = junk_form(rng);
    }
    draft.header("Connection", b"close");
    let mut raw = draft.head();
    let length = draft.body.len();
    let framing: Vec<u8> = match rng.gen_range(0..10) {
        0 => format!(
            "Content-Length: {}\r\n\r\n",
            length + rng.gen_range(1..1000)
        )
        .into_bytes(),
        1 => format!("Content-Length: {}\r\n\r\n", length / 2).into_bytes(),
        2 => b"Content-Length: -1\r\n\r\n".to_vec(),
        3 => b"Content-Length: 99999999999999999999999\r\n\r\n".to_vec(),
        4 => format!("Content-Length: {length}\r\nContent-Length: 1\r\n\r\n").into_bytes(),
        5 => format!("Content-Length: {length}\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes(),
        6 => b"Transfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
        7 => {
            let size = ["zz", "ffffffffffffffffffff", "-1", "1;ext=\x00"]
                .choose(rng)
                .expect("sizes");
            format!("Transfer-Encoding: chunked\r\n\r\n{size}\r\n").into_bytes()
        }
        8 => format!("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n", length + 10).into_bytes(),
        _ => format!("Content-Length: +{length}\r\n\r\n").into_bytes(),
    };
    raw.extend(framing);
    raw.extend(&draft.body);
    draft.raw = Some(raw);
    "bad framing"
}

fn bad_content_type(rng: &mut StdRng, draft: &mut Draft) -> &'static str {
    let value: &[u8] = [
        b"APPLICATION/X-WWW-FORM-URLENCODED".as_slice(),
        b"application/x-www-form-urlencoded; charset=iso-8859-1",
        b"application/json",
        b"text/plain",
        b"multipart/form-data; boundary=x",
        b"",
        b"application/x-www-form-urlencoded\xff",
        b";;;",
    ]
    .choose(rng)
    .expect("content types");
    draft.set_header("Content-Type", value);
    if draft.body.is_empty() {
        draft.body = junk_form(rng);
    }
    "bad content type"
}

fn bad_authorization(rng: &mut StdRng, draft: &mut Draft) -> &'static str {
    let value = junk_authorization(rng);
    draft.set_header("Authorization", &value);
    "bad authorization"
}

fn bad_query(rng: &mut StdRng, draft: &mut Draft) -> &'static str {
    let query: Vec<u8> = match rng.gen_range(0..8) {
        0 => b"limit=-1&limit=99999999999999999999".to_vec(),
        1 => b"since=not-a-date&until=%FF".to_vec(),
        2 => b"cursor=%00%00&outcome=%E2%80%AE".to_vec(),
        3 => b"actor_kind=robot&zzz=1".to_vec(),
        4 => format!("action={}", "a".repeat(rng.gen_range(100..6000))).into_bytes(),
        5 => b"%%%&&&===".to_vec(),
        6 => [
            b"response_type=code&client_id=".as_slice(),
            &junk_value(rng),
        ]
        .concat(),
        _ => b"a[b][c]=1&a=2".to_vec(),
    };
    // Raw bytes a request line cannot hold are percent-encoded.
    let query: Vec<u8> = query
        .iter()
        .flat_map(|&b| {
            if b.is_ascii_graphic() && b != b'#' {
                vec![b]
            } else {
                format!("%{b:02X}").into_bytes()
            }
        })
        .collect();
    draft.target.push(b'?');
    draft.target.extend(query);
    "bad query"
}
