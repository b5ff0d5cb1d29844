//! Strategic Reporting extracts, produced on demand.

use crate::SystmOneConfig;
use im1_sim::common::{RequestContext, SimRequest, SimResponse};
use im1_sim::record::World;

#[derive(Default)]
pub struct Extracts {}

impl Extracts {
    pub fn handle(
        &self,
        _world: &World,
        _config: &SystmOneConfig,
        _req: &SimRequest,
        _cx: &RequestContext,
    ) -> SimResponse {
        crate::pfs::xml_reply(404, String::new())
    }
}
