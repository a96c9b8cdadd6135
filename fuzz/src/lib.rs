//! What the fuzz targets share: Tessera's own signing keys (as introspection
//! holds them), the same keys as a client's registered JWK Set, and the
//! expectations the token endpoint puts on a client's assertion.

use std::sync::OnceLock;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use tessera::keys::{Alg, KeyMaterial, KeySet, MasterKey};
use tessera::oauth::ErrorCode;
use tessera::oauth::assertion::{Expectations, ReplayKey};
use tessera::store::SigningKeyRecord;

pub const CLIENT_ID: &str = "fuzz-client";
pub const ISSUER: &str = "https://tessera.example";
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);

pub struct Fixture {
    /// An ES256 and an RS256 key, both active.
    pub own: KeySet,
    /// Their public halves, as a client would register them.
    pub jwks: JwkSet,
    pub audiences: Vec<String>,
}

impl Fixture {
    /// The `private_key_jwt` expectations of the token endpoint.
    pub fn expectations(&self) -> Expectations<'_> {
        Expectations {
            subject: CLIENT_ID,
            audiences: &self.audiences,
            max_lifetime: Duration::from_secs(300),
            max_age: Some(Duration::from_secs(300)),
            replay_key: ReplayKey::Jti,
            error: ErrorCode::InvalidClient,
        }
    }

    pub fn es256(&self) -> &KeyMaterial {
        self.own
            .signer(Alg::ES256, 0)
            .and_then(|k| k.material())
            .expect("the fixture's ES256 key signs")
    }
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let master = MasterKey::from_bytes([7; 32]);
        let records: Vec<SigningKeyRecord> = [Alg::ES256, Alg::RS256]
            .into_iter()
            .map(|alg| {
                let material = KeyMaterial::generate(alg).expect("key generation");
                SigningKeyRecord::seal(&material, 1, &master, 0, 0).expect("sealing")
            })
            .collect();
        let own = KeySet::from_records(records, &master, 0).expect("the fixture's keys load");
        let public: Vec<_> = own.keys().iter().map(|k| k.public_jwk.clone()).collect();
        let jwks = serde_json::from_value(serde_json::json!({ "keys": public }))
            .expect("Tessera's public keys are a JWK Set");
        Fixture {
            own,
            jwks,
            audiences: vec![ISSUER.to_owned(), format!("{ISSUER}/oauth/token")],
        }
    })
}
