//! The invented `GET v1/organisation`: the practice `ping` names as the requesting organisation, reachable
//! under `v1`, with the address and telephone the record holds.

use crate::common;

use common::*;

#[tokio::test]
async fn organisation_is_the_practice_ping_names() {
    let sim = start().await;
    let r = get(&sim, &format!("{T}/transactional-api/v1/organisation"), &trx()).await;
    assert_eq!(r.status, 200);
    let org = r.json();
    let rec = sim.world.snapshot();
    let practice = rec.practice("Y90003").expect("the Medicus practice");
    assert_eq!(org["organisationIdentifierType"], "nhs-england-ods-code");
    assert_eq!(org["organisationIdentifierValue"], "Y90003");
    assert_eq!(org["organisationName"], practice.name.as_str());
    assert_eq!(org["telephone"], practice.phone.as_str());
    assert_eq!(org["address"]["postalCode"], practice.address.postcode.as_str());
    assert_eq!(org["address"]["locality"], practice.address.town.as_str());

    let ping = get(&sim, &format!("{T}/transactional-api/ping"), &trx()).await;
    assert_eq!(ping.status, 200);
    assert_eq!(ping.json()["requestingOrganisation"], org);

    // A call like any other: a JWT is needed.
    let r = try_send(
        &sim,
        "GET",
        &format!("{T}/transactional-api/v1/organisation"),
        None,
        &[],
        None,
    )
    .await
    .expect("reply");
    assert_eq!(r.status, 401);
}
