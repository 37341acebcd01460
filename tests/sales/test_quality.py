"""Lead data quality: required fields refused together, fields normalised, the score's
arithmetic, and fuzzy duplicates flagged only when both the person and the company match."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revhub.contacts.pii import normalise_email
from revhub.core.errors import FieldError, InvalidInput
from revhub.sales.quality import (
    LIKELY_DUPLICATE,
    CleanLead,
    RawLead,
    clean_lead,
    company_similarity,
    email_domain,
    likely_duplicate,
    name_similarity,
    normalise_company,
)

COMPLETE = RawLead(
    email="ada@acme.com",
    first_name="Ada",
    last_name="Lovelace",
    company="Acme Inc.",
    phone="+14155552671",
    job_title="CTO",
    country="US",
    source="webinar",
)
MINIMAL = RawLead(email="ada@acme.com", first_name="Ada", company="Acme")
FIELDS = {"email", "first_name", "last_name", "company", "phone", "job_title", "country"}
FIELDS |= {"website", "source"}
COST = re.compile(r"\(-(\d+)\)$")


def clean(**changes: str | None) -> CleanLead:
    return clean_lead(replace(COMPLETE, **changes))


def errors_of(raw: RawLead, prefix: str = "body") -> list[FieldError]:
    with pytest.raises(InvalidInput) as caught:
        clean_lead(raw, prefix=prefix)
    assert caught.value.status == 422
    return caught.value.errors


def costs(lead: CleanLead) -> list[int]:
    return [int(m.group(1)) for p in lead.problems if (m := COST.search(p))]


def test_a_complete_lead_scores_100_with_nothing_to_report() -> None:
    lead = clean_lead(COMPLETE)
    assert lead.quality_score == 100
    assert lead.problems == ()
    assert lead.transformations == ("company_domain: derived from email",)
    assert (lead.email, lead.phone, lead.country, lead.source) == (
        "ada@acme.com",
        "+14155552671",
        "US",
        "webinar",
    )


@pytest.mark.parametrize("name", ["email", "first_name", "company"])
@pytest.mark.parametrize("absent", [None, "", "   ", "\t\n"])
def test_each_required_field_missing_or_blank_is_refused(name: str, absent: str | None) -> None:
    errors = errors_of(replace(COMPLETE, **{name: absent}))
    assert errors == [FieldError(f"body.{name}", "is required", "missing")]


def test_all_three_required_fields_are_reported_at_once_under_the_given_prefix() -> None:
    errors = errors_of(RawLead(last_name="Lovelace"), prefix="body.leads[3]")
    assert [(e.field, e.type) for e in errors] == [
        ("body.leads[3].email", "missing"),
        ("body.leads[3].first_name", "missing"),
        ("body.leads[3].company", "missing"),
    ]


def test_a_bad_email_and_a_missing_company_are_reported_together() -> None:
    errors = errors_of(replace(COMPLETE, email="ada@", company=" "))
    assert [e.field for e in errors] == ["body.email", "body.company"]
    assert errors[0].type == "invalid"
    assert "after the @-sign" in errors[0].message


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "ada@acme",
        "@acme.com",
        "ada@",
        "a..b@acme.com",
        "ada lovelace@acme.com",
        "ada@acme..com",
        "Ada <ada@acme.com>",
        "ada@@acme.com",
        "ada@localhost",
    ],
)
def test_bad_email_syntax_is_refused(email: str) -> None:
    errors = errors_of(replace(COMPLETE, email=email))
    assert len(errors) == 1
    assert (errors[0].field, errors[0].type) == ("body.email", "invalid")
    assert errors[0].message


def test_email_is_trimmed_and_lower_cased_and_recorded() -> None:
    lead = clean(email="  John@Example.COM ")
    assert lead.email == "john@example.com"
    assert "email: trimmed" in lead.transformations
    assert "email: lower-cased" in lead.transformations
    assert lead.company_domain == "example.com"


def test_email_helpers() -> None:
    assert normalise_email("  John@Example.COM ") == "john@example.com"
    assert email_domain("ada@Sub.Acme.COM") == "sub.acme.com"
    lead = clean(email="Ada.Lovelace@ACME.com")
    assert normalise_email(lead.email) == lead.email == "ada.lovelace@acme.com"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("JOHN", "John"),
        ("john", "John"),
        ("mcDonald", "mcDonald"),
        ("McDonald", "McDonald"),
        ("  MARY   ANN ", "Mary Ann"),
        ("mary ANN", "mary ANN"),
        ("mary   ann", "Mary Ann"),
        ("José", "José"),
    ],
)
def test_first_name_is_recased_only_when_typed_in_one_case(typed: str, expected: str) -> None:
    assert clean(first_name=typed).first_name == expected


def test_name_changes_are_recorded_and_last_name_is_tidied_too() -> None:
    lead = clean(first_name="JOHN", last_name=" O'BRIEN ")
    assert (lead.first_name, lead.last_name) == ("John", "O'Brien")
    assert "first_name: recased" in lead.transformations
    assert "last_name: whitespace tidied and recased" in lead.transformations
    assert not any("JOHN" in t or "BRIEN" in t for t in lead.transformations)  # sealed
    assert clean(first_name="Ada").transformations == ("company_domain: derived from email",)


def test_company_keeps_its_legal_suffix_with_whitespace_collapsed() -> None:
    assert clean(company="  Acme   Widgets\tInc. ").company == "Acme Widgets Inc."


@pytest.mark.parametrize(
    ("phone", "country", "expected"),
    [
        ("+1 (415) 555-2671", None, "+14155552671"),
        ("+1 (415) 555-2671", "DE", "+14155552671"),
        ("030 1234567", "DE", "+49301234567"),
        ("030 1234567", "Germany", "+49301234567"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("+44 20 7946 0958", "GB", "+442079460958"),
    ],
)
def test_phones_become_e164(phone: str, country: str | None, expected: str) -> None:
    lead = clean(phone=phone, country=country)
    assert lead.phone == expected
    assert not any(p.startswith("phone:") for p in lead.problems)


def test_a_phone_reformat_is_recorded() -> None:
    lead = clean(phone="+1 (415) 555-2671")
    assert "phone: normalised" in lead.transformations
    assert not any("555" in t for t in lead.transformations)  # a sealed field is not quoted


@pytest.mark.parametrize("phone", ["junk", "+1 555", "12", "+999 123456789", "555-2671"])
def test_a_bad_phone_is_dropped_with_a_problem_not_an_error(phone: str) -> None:
    lead = clean(phone=phone)
    assert lead.phone is None
    assert lead.problems == ("phone: not a valid number; dropped (-15)",)
    assert lead.quality_score == 85


def test_a_national_phone_without_a_country_is_dropped_with_a_hint() -> None:
    lead = clean(phone="030 1234567", country=None)
    assert lead.phone is None
    problem = "phone: not a valid number (no country, so it needs a +); dropped"
    assert f"{problem} (-15)" in lead.problems
    assert lead.quality_score == 80


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("Germany", "DE"),
        ("germany", "DE"),
        ("United States", "US"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("UK", "GB"),
        ("united  kingdom", "GB"),
        ("de", "DE"),
        (" fr ", "FR"),
        ("XK", "XK"),
        ("AQ", "AQ"),
    ],
)
def test_countries_become_iso_alpha2(typed: str, code: str) -> None:
    lead = clean(country=typed)
    assert lead.country == code
    assert lead.quality_score == 100


@pytest.mark.parametrize("typed", ["Atlantis", "ZZ", "AC", "Germany!"])
def test_an_unknown_country_is_dropped_with_a_problem(typed: str) -> None:
    lead = clean(country=typed)
    assert lead.country is None
    assert lead.problems == (f"country: {typed!r} is not a known country; dropped (-5)",)
    assert lead.quality_score == 95


@pytest.mark.parametrize("email", ["ada@gmail.com", "ada@GMX.de", "ada@yandex.ru", "a@proton.me"])
def test_a_free_mailbox_gives_no_company_domain_and_costs_15(email: str) -> None:
    lead = clean(email=email)
    assert lead.company_domain is None
    assert lead.quality_score == 85
    assert len(lead.problems) == 1
    assert lead.problems[0].startswith("email: ") and "free mailbox" in lead.problems[0]
    assert not any(t.startswith("company_domain") for t in lead.transformations)


@pytest.mark.parametrize(
    ("website", "domain"),
    [
        ("https://www.Acme-Corp.io/about?x=1", "acme-corp.io"),
        ("acme-corp.io", "acme-corp.io"),
        ("WWW.acme-corp.io/", "acme-corp.io"),
        ("http://user@shop.acme-corp.io:8080", "shop.acme-corp.io"),
    ],
)
def test_the_website_wins_over_the_email_domain(website: str, domain: str) -> None:
    lead = clean(website=website)
    assert lead.company_domain == domain
    assert f"company_domain: {domain!r} from website" in lead.transformations
    assert lead.quality_score == 100


def test_a_website_gives_a_domain_even_with_a_free_mailbox_but_the_penalty_stays() -> None:
    lead = clean(email="ada@gmail.com", website="acme.io")
    assert lead.company_domain == "acme.io"
    assert lead.quality_score == 85


@pytest.mark.parametrize("website", ["not a website", "http://", "localhost", "http://[::1"])
def test_an_unusable_website_falls_back_to_the_email_domain_at_no_cost(website: str) -> None:
    lead = clean(website=website)
    assert lead.company_domain == "acme.com"
    assert lead.problems == (f"website: {website!r} is not a URL or domain; ignored",)
    assert lead.quality_score == 100


@pytest.mark.parametrize(
    "email", ["info@acme.com", "Sales@acme.com", "no-reply@acme.com", "noreply@acme.com"]
)
def test_a_role_address_costs_10(email: str) -> None:
    lead = clean(email=email)
    assert lead.quality_score == 90
    assert len(lead.problems) == 1
    assert "role address" in lead.problems[0]
    assert lead.problems[0].endswith("(-10)")


@pytest.mark.parametrize("email", ["ada.info@acme.com", "salesforce@acme.com", "helloada@acme.com"])
def test_a_personal_address_that_merely_contains_a_role_word_costs_nothing(email: str) -> None:
    assert clean(email=email).quality_score == 100


def test_a_minimal_lead_loses_exactly_40() -> None:
    lead = clean_lead(MINIMAL)
    assert lead.quality_score == 60
    assert sorted(costs(lead)) == [5, 5, 10, 10, 10]
    assert {p.split(":")[0] for p in lead.problems} == {
        "last_name",
        "job_title",
        "phone",
        "country",
        "source",
    }


def test_a_role_address_at_a_free_mailbox_with_a_bad_phone_and_unknown_country() -> None:
    lead = clean_lead(replace(MINIMAL, email="INFO@Gmail.com", phone="+1 555", country="Narnia"))
    assert lead.quality_score == 100 - 10 - 10 - 15 - 15 - 10 - 5 - 10
    assert lead.email == "info@gmail.com"
    assert lead.company_domain is None
    assert sum(costs(lead)) == 75


OPTIONAL = st.none() | st.text(max_size=30) | st.sampled_from(["+14155552671", "DE", "acme.io"])


@given(
    email=st.sampled_from(["ada@acme.com", "info@gmail.com", "Sales@GMX.net", "x@acme.co.uk"]),
    first_name=st.text(min_size=1, max_size=20).filter(str.strip),
    company=st.text(min_size=1, max_size=20).filter(str.strip),
    last_name=OPTIONAL,
    phone=OPTIONAL,
    job_title=OPTIONAL,
    country=OPTIONAL,
    website=OPTIONAL,
    source=OPTIONAL,
)
def test_the_score_stays_in_range_and_is_100_minus_the_listed_costs(
    email: str,
    first_name: str,
    company: str,
    last_name: str | None,
    phone: str | None,
    job_title: str | None,
    country: str | None,
    website: str | None,
    source: str | None,
) -> None:
    raw = RawLead(email, first_name, last_name, company, phone, job_title, country, website, source)
    lead = clean_lead(raw)
    assert 0 <= lead.quality_score <= 100
    assert lead.quality_score == max(0, 100 - sum(costs(lead)))
    assert all(p.split(":", 1)[0] in FIELDS for p in lead.problems)
    assert (lead.phone is None) == any(p.startswith("phone:") for p in lead.problems)
    assert (lead.country is None) == any(p.startswith("country:") for p in lead.problems)
    assert lead.first_name == lead.first_name.strip() and lead.company == lead.company.strip()


def test_company_names_normalise_without_punctuation_or_legal_suffixes() -> None:
    assert normalise_company("Acme Inc.") == "acme"
    assert normalise_company("ACME, Incorporated") == "acme"
    assert normalise_company("Acme Widgets Pty. Ltd.") == "acme widgets"
    assert normalise_company("Müller GmbH & Co.") == "müller"
    assert normalise_company("Acme L.L.C.") == "acme"
    assert normalise_company("Company") == "company"
    assert normalise_company("Co-operative Bank plc") == "co operative bank"


def test_similar_company_spellings_match_and_different_companies_do_not() -> None:
    assert company_similarity("Acme Inc.", "ACME, Incorporated") == 100.0
    assert company_similarity("Acme Corp", "Acme Corporation") == 100.0
    assert company_similarity("Acme", "Globex") < 50
    assert company_similarity("!!!", "!!!") == 0.0


def test_name_similarity_ignores_case_and_word_order() -> None:
    assert LIKELY_DUPLICATE <= name_similarity("Jon", "Smith", "John", "Smith") < 100
    assert name_similarity("JOHN", "smith", "Smith", "John") == 100.0
    assert name_similarity("John", None, "John", "Smith") < LIKELY_DUPLICATE
    assert name_similarity("Jane", "Doe", "John", "Smith") < 50


def test_jon_and_john_smith_at_acme_are_flagged_for_review() -> None:
    a = clean(first_name="Jon", last_name="Smith", company="Acme Inc.")
    b = clean(first_name="John", last_name="Smith", company="ACME, Incorporated")
    score = likely_duplicate(a, b)
    assert score is not None
    assert LIKELY_DUPLICATE <= score < 100
    assert score == likely_duplicate(b, a)


def test_the_same_name_at_different_companies_is_not_flagged() -> None:
    a = clean(first_name="John", last_name="Smith", company="Acme Inc.")
    b = clean(first_name="John", last_name="Smith", company="Globex Corporation")
    assert likely_duplicate(a, b) is None


def test_different_people_at_the_same_company_are_not_flagged() -> None:
    a = clean(first_name="John", last_name="Smith", company="Acme Inc.")
    b = clean(first_name="Jane", last_name="Doe", company="Acme Inc.")
    assert likely_duplicate(a, b) is None
    assert likely_duplicate(a, a) == 100.0


@given(email=st.text(max_size=40) | st.emails())
def test_any_email_is_either_refused_as_input_or_kept_in_its_lookup_spelling(email: str) -> None:
    raw = replace(COMPLETE, email=email)
    try:
        lead = clean_lead(raw)
    except InvalidInput:
        assert [e.field for e in errors_of(raw)] == ["body.email"]
        return
    assert lead.email == normalise_email(lead.email)
    if email.isascii() and "xn--" not in email.lower():
        assert lead.email == normalise_email(email)
