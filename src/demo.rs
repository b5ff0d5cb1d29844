//! The demo: the three simulators on 127.0.0.1, their seeded linkage credentials loaded into the proxy's
//! credential store, and the three demo practices configured against them (`Y90001` EMIS Web, `Y90002` TPP
//! SystmOne, `Y90003` Medicus). Used by `im1-fhir demo`, `im1-fhir sim` and the tests.

use crate::backend::credentials::{CredentialStore, Linkage};
use crate::config::secret::Secret;
use crate::config::{
    Credentials, EmisCredentials, MedicusCredentials, NativePace, PracticeConfig, Supplier, SystmOneCredentials,
};
use im1_sim::common::SimHandle;
use im1_sim::record::World;
use im1_sim::SimOptions;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The demo Medicus application's signing key (published; see keys/README.md).
const DEMO_MEDICUS_KEY: &str = include_str!("../keys/demo-medicus-app.key.pem");

/// The running simulators.
pub struct Simulators {
    pub world: Arc<World>,
    pub emis: SimHandle,
    pub systmone: im1_sim_systmone::SystmOneHandles,
    pub medicus: SimHandle,
    pub emis_config: im1_sim_emis::EmisConfig,
    pub systmone_config: im1_sim_systmone::SystmOneConfig,
    pub medicus_config: im1_sim_medicus::MedicusConfig,
}

impl Simulators {
    /// Starts the three simulators on ports the OS chooses.
    pub async fn start(options: SimOptions) -> Result<Simulators, String> {
        Self::start_with(options, |_, _, _| {}).await
    }

    /// As `start`, letting the caller adjust each simulator's configuration (tests inject faults this way).
    pub async fn start_with(
        options: SimOptions,
        adjust: impl FnOnce(
            &mut im1_sim_emis::EmisConfig,
            &mut im1_sim_systmone::SystmOneConfig,
            &mut im1_sim_medicus::MedicusConfig,
        ),
    ) -> Result<Simulators, String> {
        let world = options.world();
        let mut emis_config = im1_sim_emis::EmisConfig {
            throttle: options.throttle,
            ..Default::default()
        };
        let mut systmone_config = im1_sim_systmone::SystmOneConfig {
            throttle: options.throttle,
            ..Default::default()
        };
        let mut medicus_config = im1_sim_medicus::MedicusConfig {
            throttle: options.throttle,
            ..Default::default()
        };
        adjust(&mut emis_config, &mut systmone_config, &mut medicus_config);
        let emis = im1_sim_emis::serve(listener().await?, world.clone(), emis_config.clone()).await;
        let systmone = im1_sim_systmone::serve(
            listener().await?,
            listener().await?,
            world.clone(),
            systmone_config.clone(),
        )
        .await;
        let medicus = im1_sim_medicus::serve(listener().await?, world.clone(), medicus_config.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Simulators {
            world,
            emis,
            systmone,
            medicus,
            emis_config,
            systmone_config,
            medicus_config,
        })
    }

    /// Every living patient's linkage at each demo practice, as NHS login would hand them to the proxy.
    pub fn linkage(&self) -> Arc<CredentialStore> {
        let store = CredentialStore::default();
        for l in im1_sim_emis::linkage_credentials(&self.world, &self.emis_config) {
            store.insert(
                &l.national_practice_code,
                &l.nhs_number,
                Linkage::Emis {
                    account_id: l.account_id,
                    linkage_key: l.linkage_key,
                    surname: l.surname,
                    date_of_birth: l.date_of_birth,
                },
            );
        }
        for l in im1_sim_systmone::linkage_credentials(&self.world, &self.systmone_config) {
            store.insert(
                &l.organisation_code,
                &l.nhs_number,
                Linkage::SystmOne {
                    account_id: l.account_id,
                    passphrase: l.passphrase,
                    last_name: l.last_name,
                    date_of_birth: l.date_of_birth,
                },
            );
        }
        for l in im1_sim_medicus::linkage_credentials(&self.world, &self.medicus_config) {
            store.insert(
                &self.medicus_config.practice_ods,
                &l.nhs_number,
                Linkage::Medicus {
                    linkage_token: l.linkage_token,
                    date_of_birth: l.date_of_birth,
                    nhs_login_sub: l.nhs_login_sub,
                },
            );
        }
        Arc::new(store)
    }

    /// The three demo practices, configured against these simulators.
    pub fn practices(&self) -> Vec<PracticeConfig> {
        let emis = &self.emis_config;
        let tpp = &self.systmone_config;
        let medicus = &self.medicus_config;
        vec![
            PracticeConfig {
                ods: emis.practice_ods.clone(),
                supplier: Supplier::Emis,
                policy: Default::default(),
                base_url: format!("{}/emis", self.emis.base_url()),
                credentials: Credentials::Emis(EmisCredentials {
                    application_id: emis.application_id.clone(),
                    partner_client_id: emis.client_id.clone(),
                    partner_client_secret: Secret::new(emis.client_secret.clone()),
                    cdb: emis.cdb.clone(),
                }),
                // PFS: per application id (the Partner API is not limited).
                pace: NativePace {
                    transaction: None,
                    patient: within(emis.throttle, emis.rate_per_second, 1),
                },
            },
            PracticeConfig {
                ods: tpp.unit_id.clone(),
                supplier: Supplier::SystmOne,
                policy: Default::default(),
                base_url: format!("{}/tpp", self.systmone.pfs.base_url()),
                credentials: Credentials::SystmOne(SystmOneCredentials {
                    provider_id: tpp.provider_id.clone(),
                    api_key: crate::config::secret::Secret::new(tpp.api_key.clone()),
                    device_id: tpp.device_id.clone(),
                    transaction_address: self.systmone.transaction.addr().to_string(),
                }),
                // Per device (transaction) and per session (PFS).
                pace: NativePace {
                    transaction: within(tpp.throttle, tpp.rate_per_second, 1),
                    patient: within(tpp.throttle, tpp.rate_per_second, 1),
                },
            },
            PracticeConfig {
                ods: medicus.practice_ods.clone(),
                supplier: Supplier::Medicus,
                policy: Default::default(),
                base_url: format!("{}/medicus/{}", self.medicus.base_url(), medicus.tenant),
                credentials: Credentials::Medicus(MedicusCredentials {
                    app_id: medicus.app_id.clone(),
                    tenant: medicus.tenant.clone(),
                    key_id: medicus.key_id.clone().unwrap_or_default(),
                    private_key: Secret::new(DEMO_MEDICUS_KEY),
                }),
                // Per app and tenant: the two surfaces share it.
                pace: NativePace {
                    transaction: within(medicus.throttle, im1_sim_medicus::RATE_PER_SECOND, 2),
                    patient: within(medicus.throttle, im1_sim_medicus::RATE_PER_SECOND, 2),
                },
            },
        ]
    }

    /// One line per simulator: what it is and where.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!(
                "EMIS Web     Y90001  {}/emis  (PFS /emis/pfs, Partner /emis/partner/v1)",
                self.emis.base_url()
            ),
            format!(
                "TPP SystmOne Y90002  {}/tpp/pfs  (PFS, XML)  Client Integration tcp://{}",
                self.systmone.pfs.base_url(),
                self.systmone.transaction.addr()
            ),
            format!(
                "Medicus      Y90003  {}/medicus/{}  (pfs-api, transactional-api)",
                self.medicus.base_url(),
                self.medicus_config.tenant
            ),
        ]
    }

    pub async fn shutdown(self) {
        self.emis.shutdown().await;
        self.systmone.shutdown().await;
        self.medicus.shutdown().await;
    }
}

async fn listener() -> Result<TcpListener, String> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))
}

/// The pace for a surface of a throttled simulator that allows `rate` calls a second shared by `surfaces`
/// surfaces: a tenth under its share, so the proxy waits rather than being refused.
fn within(throttled: bool, rate: u32, surfaces: u32) -> Option<NonZeroU32> {
    throttled.then(|| NonZeroU32::new((rate / surfaces.max(1)) * 9 / 10).unwrap_or(NonZeroU32::MIN))
}
