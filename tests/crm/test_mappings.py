"""Field mappings: seed 002's defaults, validation that names the mistake, value transforms."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import yaml

from revhub.core.errors import ConfigurationError
from revhub.crm.mappings import FieldMap, default_mappings, parse_mappings

SEED_SALESFORCE_LEAD = {
    "lead_id": "Marketing_Platform_ID__c",
    "email": "Email",
    "first_name": "FirstName",
    "last_name": "LastName",
    "company": "Company",
    "lead_score": "Lead_Score__c",
    "lead_source": "LeadSource",
    "campaign_id": "Campaign_ID__c",
}


def document() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("revhub.crm").joinpath("mappings_default.yaml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return copy.deepcopy(loaded)


def test_defaults_are_seed_002s_salesforce_and_hubspot_mappings() -> None:
    mappings = default_mappings()
    lead = mappings.salesforce.contact
    assert lead.object == "Lead" and lead.key == "lead_id"
    assert {k: v.crm for k, v in lead.fields.items() if k in SEED_SALESFORCE_LEAD} == (
        SEED_SALESFORCE_LEAD
    )
    hubspot = mappings.hubspot.contact.fields
    assert hubspot["lead_id"].crm == "marketing_platform_id"
    assert hubspot["lead_source"].crm == "hs_analytics_source"
    assert hubspot["first_conversion_date"].crm == "first_conversion_date"
    assert mappings.hubspot.contact.key == "email"  # HubSpot batch upsert by email
    assert mappings.critical == {"email", "owner_email", "amount", "is_closed_won"}


def test_marketing_owns_score_source_campaign_and_the_crm_owns_stage_amount_owner() -> None:
    for crm in ("salesforce", "hubspot", "pipedrive"):
        mapped = default_mappings().of(crm)
        assert mapped.contact.fields["lead_score"].owner == "marketing", crm
        assert mapped.contact.fields["lead_source"].owner == "marketing", crm
        for name in ("stage", "amount", "owner_email"):
            assert mapped.deal.fields[name].owner == "crm", (crm, name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["hubspot"]["contact"]["fields"].update(shoe_size={"crm": "x", "owner": "crm"}),
         "hubspot.contact: no hub field shoe_size"),
        (lambda d: d["salesforce"]["deal"]["fields"]["amount"].update(owner="finance"),
         "salesforce.deal.fields.amount.owner"),
        (lambda d: d["pipedrive"]["contact"].update(mode="sometimes"),
         "pipedrive.contact.mode"),
        (lambda d: d["hubspot"]["deal"].update(key="nothing"),
         "key 'nothing' is not one of the mapped fields"),
        (lambda d: d["salesforce"]["contact"]["fields"]["company"].update(crm="Email"),
         "both map to 'Email'"),
        (lambda d: d.update(critical=["email", "wingspan"]), "critical: no hub field wingspan"),
        (lambda d: d["hubspot"]["contact"]["fields"]["email"].update(colour="blue"),
         "hubspot.contact.fields.email.colour"),
        (lambda d: d.pop("pipedrive"), "pipedrive"),
    ],
)  # fmt: skip
def test_a_bad_mapping_is_refused_naming_where_it_is_wrong(change: Any, message: str) -> None:
    doc = document()
    change(doc)
    with pytest.raises(ConfigurationError, match="invalid") as caught:
        parse_mappings(doc, source="test.yaml")
    assert message in str(caught.value) and "test.yaml" in str(caught.value)


def test_values_are_transformed_both_ways() -> None:
    stage = default_mappings().hubspot.deal.fields["stage"]
    assert stage.to_hub("closedwon") == "Closed Won" and stage.to_crm("Closed Won") == "closedwon"
    assert stage.to_hub("appointmentscheduled") == "appointmentscheduled"  # unmapped: as is
    money = FieldMap(crm="Amount", owner="crm", type="money")
    assert money.to_hub("1234.50") == Decimal("1234.50") and money.to_crm(Decimal("5")) == "5"
    when = FieldMap(crm="closedate", owner="crm", type="datetime")
    assert when.to_hub("1767225600000") == datetime(2026, 1, 1, tzinfo=UTC)  # epoch ms
    assert when.to_hub("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    day = FieldMap(crm="CloseDate", owner="crm", type="date")
    assert day.to_hub("2026-03-01") == date(2026, 3, 1)
    emails = default_mappings().pipedrive.contact.fields["email"]
    listed = [{"value": "b@x.example", "primary": False}, {"value": "a@x.example", "primary": True}]
    assert emails.to_hub(listed) == "a@x.example"
    assert emails.to_crm("a@x.example") == [
        {"value": "a@x.example", "primary": True, "label": "work"}
    ]
    with pytest.raises(ValueError, match="not a number"):
        FieldMap(crm="Lead_Score__c", owner="marketing", type="number").to_hub("lots")
