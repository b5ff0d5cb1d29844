//! The invented `GetSiteDetails` Client Integration function: the unit's own name, ODS code, telephone and
//! address, as PFS `Authenticate` gives them; another unit is refused.

use crate::common;

use common::*;

#[tokio::test]
async fn get_site_details_names_the_unit() {
    let sim = start(quiet()).await;
    let rec = sim.world.snapshot();
    let practice = rec.practice("Y90002").expect("the SystmOne practice");
    for params in [r#"unitId="Y90002""#, ""] {
        let reply = ci(&sim, "GetSiteDetails", params, "").await;
        let site = result(&reply).child("SiteDetails").expect("SiteDetails");
        assert_eq!(site.attr("unitId"), Some("Y90002"));
        assert_eq!(site.attr("unitName"), Some(practice.name.as_str()));
        assert_eq!(site.attr("telephone"), Some(practice.phone.as_str()));
        let address = site.child("Address").expect("Address");
        assert_eq!(address.attr("houseName"), Some(practice.address.house.as_str()));
        assert_eq!(address.attr("street"), Some(practice.address.street.as_str()));
        assert_eq!(address.attr("town"), Some(practice.address.town.as_str()));
        assert_eq!(address.attr("postcode"), Some(practice.address.postcode.as_str()));
    }
    let other = ci(&sim, "GetSiteDetails", r#"unitId="Y90001""#, "").await;
    assert_eq!(ci_error(&other), "6");
}
