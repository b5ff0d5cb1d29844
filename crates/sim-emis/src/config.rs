//! The simulator's configuration: the demo credentials the proxy is configured with, and the native limits.

use im1_sim::common::FaultRates;
use std::time::Duration;

/// Configuration of the EMIS simulator. `Default` gives the demo values the proxy's demo configuration uses.
#[derive(Debug, Clone)]
pub struct EmisConfig {
    /// The consumer application GUID issued at pairing; PFS calls must send it as `X-API-ApplicationId`.
    /// Demo: `0F4C2B7A-9E1D-4C55-8A21-5D3E6B7C8D90`.
    pub application_id: String,
    /// Partner API OAuth client id (`client_id` of `POST /emis/partner/v1/token`). Demo: `im1-fhir-demo`.
    pub client_id: String,
    /// Partner API OAuth client secret. Demo: `emis-demo-secret`.
    pub client_secret: String,
    /// The practice's EMIS CDB number, required as `X-EMIS-OrganisationCdb` on Partner calls. Demo: `50002`.
    pub cdb: String,
    /// The practice's ODS code (`NationalPracticeCode`). Demo: `Y90001`.
    pub practice_ods: String,
    /// Apply the simulator's rate limit (a convention, not EMIS's published figure: 10 requests/s per
    /// `X-API-ApplicationId`, then 429 with `Retry-After: 2`).
    /// Demo: `true`; benchmarks switch it off.
    pub throttle: bool,
    /// Random fault rates; `X-Sim-Fault` header faults work whatever these are. Demo: none.
    pub faults: FaultRates,
    /// Idle lifetime of a PFS `SessionId`. Demo: 20 minutes (the dialect's value).
    pub session_idle: Duration,
    /// Idle lifetime of an `EndUserSessionId`. Demo: 60 minutes (the dialect's value).
    pub end_user_session_idle: Duration,
    /// Lifetime of a Partner access token (`expires_in`). Demo: 900 seconds.
    pub token_lifetime: Duration,
    /// PFS requests per second allowed per application id when throttling. Demo: 10.
    pub rate_per_second: u32,
    /// Most future booked appointments a patient may hold online; one more is refused with -1156.
    /// Demo: `None` (no limit).
    pub booking_limit: Option<usize>,
}

impl Default for EmisConfig {
    fn default() -> Self {
        EmisConfig {
            application_id: "0F4C2B7A-9E1D-4C55-8A21-5D3E6B7C8D90".into(),
            client_id: "im1-fhir-demo".into(),
            client_secret: "emis-demo-secret".into(),
            cdb: "50002".into(),
            practice_ods: "Y90001".into(),
            throttle: true,
            faults: FaultRates::default(),
            session_idle: Duration::from_secs(20 * 60),
            end_user_session_idle: Duration::from_secs(60 * 60),
            token_lifetime: Duration::from_secs(900),
            rate_per_second: 10,
            booking_limit: None,
        }
    }
}
