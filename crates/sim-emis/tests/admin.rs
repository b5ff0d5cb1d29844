//! The invented practice-level Partner calls: `users`, `users/{UserInRoleGuid}` and `organisation`, checked
//! against the generator's staff and practice.

use crate::common;

use common::*;
use im1_sim::record::{native_id, Supplier};

#[tokio::test]
async fn users_and_the_organisation_come_without_a_patient() {
    let sim = start(unthrottled()).await;
    let token = sim.partner_token().await;
    let rec = sim.world.snapshot();

    let r = sim.partner(&token, "GET", "users", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let users = r.json()["Users"].as_array().cloned().expect("Users");
    let staff: Vec<_> = rec
        .practitioners
        .iter()
        .filter_map(|p| p.roles.iter().find(|x| x.practice == "Y90001").map(|role| (p, role)))
        .collect();
    assert_eq!(users.len(), staff.len());
    for (p, role) in &staff {
        let uir = native_id(Supplier::Emis, &role.id);
        let user = users
            .iter()
            .find(|u| u["UserInRoleGuid"] == uir.as_str())
            .unwrap_or_else(|| panic!("{uir} listed"));
        assert_eq!(user["Surname"], p.name.family.as_str());
        assert_eq!(user["UserGuid"], native_id(Supplier::Emis, &p.id).as_str());
        assert_eq!(user["RegistrationNumber"], p.registration_number.as_str());

        // One user in role by its GUID, in any case.
        let one = sim
            .partner(&token, "GET", &format!("users/{}", uir.to_ascii_lowercase()), None)
            .await;
        assert_eq!(one.status, 200, "{}", one.text());
        assert_eq!(&one.json(), user);
    }
    let missing = sim
        .partner(&token, "GET", "users/00000000-0000-4000-8000-000000000000", None)
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["Message"], "User not found");

    let r = sim.partner(&token, "GET", "organisation", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let org = r.json();
    let practice = rec.practice("Y90001").expect("the EMIS practice");
    assert_eq!(org["ODSCode"], "Y90001");
    assert_eq!(org["CDB"], "50002");
    assert_eq!(org["OrganisationName"], practice.name.as_str());
    assert_eq!(org["TelephoneNumber"], practice.phone.as_str());
    assert_eq!(org["Address"]["Postcode"], practice.address.postcode.as_str());
    assert_eq!(
        org["OrganisationGuid"],
        native_id(Supplier::Emis, &practice.id).as_str()
    );

    // The Partner checks still apply.
    let r = sim
        .req(
            "GET",
            "/emis/partner/v1/users",
            &[("X-EMIS-OrganisationCdb", "50002")],
            None,
        )
        .await;
    assert_eq!(r.status, 401);
}
