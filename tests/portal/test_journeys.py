"""The portal's journeys in a real browser (Debian's Chromium), as people take them: a researcher
logs in, searches, opens a dataset, applies; a committee member, in a browser of her own,
approves; the researcher's search now shows records, and she runs a GWAS and sees its plot. Then
the committee's own journey (refuse a reason-less rejection, return, resubmission, approval with
an end date, revocation) and the auditor's (the trail, filtered, and its verification).

Every page is checked on arrival: no console errors, no serious or critical axe-core violations,
and a screenshot in docs/screenshots/ (the README shows two of them). Each journey has a
researcher of its own, so what other tests granted on the shared network changes nothing here.
"""

from __future__ import annotations

import re
from itertools import count

from playwright.sync_api import Page, expect

from tests.portal.browser import NewContext, check_page
from tests.portal.network import PortalNetwork, a_variant

_RESEARCHERS = count(1)
#: A GWAS on the small demo data finishes in seconds; the page polls its progress.
JOB_TIMEOUT_MS = 180_000


def _new_researcher(network: PortalNetwork) -> str:
    user = f"journey-{next(_RESEARCHERS)}"
    network.running.issuer.add_demo_user(user, name=f"Researcher {user}",
                                         researcher_status=True, accepted_terms=True)
    return user


def _log_in(page: Page, network: PortalNetwork, user: str, screenshot: str | None = None) -> None:
    """From any portal page: the menu's Log in, the issuer's form, back where we were."""
    page.get_by_role("link", name="Log in").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Sign in")
    if screenshot:
        check_page(page, screenshot)
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(network.password(user))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Logged in as")).to_be_visible()


def _dataset_row(page: Page, dataset: str) -> str:
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=dataset, exact=True))
    return row.first.inner_text()


def _apply_for(page: Page, search: str, datasets: list[str], purpose: str) -> None:
    """From the search results at `search`: the first dataset's page and its basket button, the
    others' basket buttons in the results, then the application form in the basket."""
    first, *others = datasets
    page.get_by_role("link", name=first, exact=True).first.click()
    expect(page).to_have_url(re.compile(rf"/portal/datasets/[a-z]+/{first}$"))
    check_page(page, f"journey-researcher-2-dataset-{first}")
    page.get_by_role("button", name="Add to basket").click()
    expect(page.get_by_text("In your basket").first).to_be_visible()
    for dataset in others:
        page.goto(search)
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=dataset,
                                                                   exact=True))
        row.get_by_role("button", name="Add to basket").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Basket").click()
    expect(page).to_have_url(re.compile(r"/portal/basket"))
    # The demo's controlled datasets are consented for health/medical/biomedical research (HMB).
    page.get_by_label(re.compile(r"^health or medical or biomedical research")).check()
    page.get_by_label("Project description").fill(purpose)
    page.get_by_label(re.compile("Duration of access")).fill("180")
    check_page(page, f"journey-researcher-3-basket-{first}")
    page.get_by_role("button", name="Send the application").click()
    expect(page.get_by_text("submitted").first).to_be_visible()
    check_page(page, f"journey-researcher-4-sent-{first}")


def _approve(member: Page, network: PortalNetwork, user: str, researcher: str,
             screenshots: bool) -> None:
    """Committee member `user`'s browser, at her node's portal: log in, open the researcher's
    application, approve it."""
    member.goto("/portal/committee")
    expect(member.get_by_role("heading", level=1)).to_contain_text("Sign in")
    member.get_by_label("Username").fill(user)
    member.get_by_label("Password").fill(network.password(user))
    member.get_by_role("button", name="Sign in").click()
    expect(member.get_by_role("heading", level=1)).to_contain_text("committee")
    if screenshots:
        check_page(member, "journey-committee-queue")
    _open_application(member, researcher, network)
    member.get_by_role("button", name="Approve and issue the visas").click()
    expect(member.get_by_role("button", name="Revoke").first).to_be_visible()
    check_page(member, f"journey-committee-approved-{user}")


def _open_application(page: Page, researcher: str, network: PortalNetwork) -> None:
    """In the committee queue: the application of `researcher` (shown by issuer|subject)."""
    sub = network.running.issuer.user(researcher).sub
    row = page.get_by_role("row").filter(has_text=sub).first
    row.get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Application")


def test_the_researchers_journey(portal_network: PortalNetwork,
                                 new_context: NewContext) -> None:
    researcher = _new_researcher(portal_network)
    variant = a_variant(portal_network, "fi", "fi-biobank")
    page = new_context(base_url=portal_network.hub).new_page()

    page.goto("/portal/")
    check_page(page, "journey-researcher-0-home")
    _log_in(page, portal_network, researcher, screenshot="journey-issuer-sign-in")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Search").click()
    page.get_by_label("Variant, gene or HPO term").fill(variant)
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/portal/search\?"))
    before = _dataset_row(page, "fi-biobank")
    assert "records" not in before, before
    check_page(page, "journey-researcher-1-search")

    search = page.url
    _apply_for(page, search, ["fi-biobank", "se-cohort"],
               "Which variants of chr20 are linked to LDL cholesterol?")

    # Each node's committee member, in a browser of her own.
    for node in ("fi", "se"):
        member = new_context(base_url=portal_network.node(node)).new_page()
        _approve(member, portal_network, f"dac-{node}", researcher, screenshots=node == "fi")

    # Her search again, after logging in anew (visas come with a login, as at LS-AAI): records
    # now, for the dataset she was granted.
    page.get_by_role("button", name="Log out").click()
    _log_in(page, portal_network, researcher)
    page.goto(f"/portal/search?variant={variant}")
    after = _dataset_row(page, "fi-biobank")
    assert "records" in after, after
    check_page(page, "journey-researcher-5-search-granted")
    page.goto("/portal/applications")
    expect(page.get_by_text("approved").first).to_be_visible()

    # A GWAS over the dataset she holds.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analyses").click()
    page.get_by_label(re.compile(r"^GWAS")).first.check()
    page.get_by_label("Phenotype").fill("LOINC:2089-1")  # LDL cholesterol
    for dataset in ("fi-biobank", "se-cohort"):
        page.get_by_label(re.compile(rf"^{dataset}")).check()
    check_page(page, "journey-researcher-6-analyses")
    page.get_by_role("button", name="Submit the analysis").click()
    expect(page.get_by_role("heading", level=2, name="Results")).to_be_visible(
        timeout=JOB_TIMEOUT_MS)
    manhattan = page.locator("canvas[role='img']").first
    expect(manhattan).to_be_visible()
    expect(page.get_by_role("table").filter(has_text="Top hits")).to_be_visible()
    check_page(page, "journey-researcher-7-gwas")


def test_the_committees_journey(portal_network: PortalNetwork,
                                new_context: NewContext) -> None:
    researcher = _new_researcher(portal_network)
    page = new_context(base_url=portal_network.hub).new_page()
    page.goto("/portal/search?variant=" + a_variant(portal_network, "se", "se-cohort"))
    _log_in(page, portal_network, researcher)
    _apply_for(page, page.url, ["se-cohort"],
               "Population structure of Swedish and Finnish cohorts.")

    member = new_context(base_url=portal_network.node("se")).new_page()
    member.goto("/portal/")
    _log_in(member, portal_network, "dac-se")
    member.get_by_role("link", name="Committee", exact=True).first.click()
    _open_application(member, researcher, portal_network)
    check_page(member, "journey-committee-application")

    # A rejection without its reason is not sent: the browser holds the form (the server's
    # own refusal of it is in test_committee.py), and nothing changes.
    before = member.url
    member.get_by_role("button", name="Reject").click()
    reason = member.get_by_label(re.compile(r"^Reason \(required"))
    assert reason.evaluate("field => field.validity.valueMissing")
    assert member.url == before
    expect(member.get_by_text("submitted").first).to_be_visible()

    member.get_by_label("Comment (required").fill("Please name the cohorts' use in the project.")
    member.get_by_role("button", name="Return with this comment").click()
    expect(member.get_by_text("returned").first).to_be_visible()

    # The researcher answers and resubmits.
    page.goto("/portal/applications")
    page.get_by_role("row").filter(has_text="returned").get_by_role("link").first.click()
    page.get_by_label("Your answer to the committee").fill("Both cohorts, for PCA only.")
    page.get_by_role("button", name="Resubmit the application").click()
    expect(page.get_by_text("submitted").first).to_be_visible()

    member.reload()
    expect(member.get_by_text("submitted").first).to_be_visible()
    member.get_by_label("Access ends on").fill("2027-01-31")
    member.get_by_role("button", name="Approve and issue the visas").click()
    expect(member.get_by_role("button", name="Revoke").first).to_be_visible()
    expect(member.get_by_text("2027-01-31").first).to_be_visible()
    member.get_by_label("Why (recorded").first.fill("Project ended early.")
    member.get_by_role("button", name="Revoke").first.click()
    expect(member.get_by_text("revoked").first).to_be_visible()
    check_page(member, "journey-committee-revoked")

    page.goto("/portal/applications")
    expect(page.get_by_text("revoked").first).to_be_visible()
    check_page(page, "journey-researcher-applications-revoked")


def test_the_auditors_journey(portal_network: PortalNetwork,
                              new_context: NewContext) -> None:
    # Something to audit: an anonymous and a logged-in search through the network.
    anonymous = new_context(base_url=portal_network.hub).new_page()
    anonymous.goto("/portal/search?variant=" + a_variant(portal_network, "nl", "nl-diverse"))
    check_page(anonymous, "journey-anonymous-search")

    auditor = new_context(base_url=portal_network.node("nl")).new_page()
    auditor.goto("/portal/audit")
    expect(auditor.get_by_role("heading", level=1)).to_contain_text("Sign in")
    auditor.get_by_label("Username").fill("dac-nl")
    auditor.get_by_label("Password").fill(portal_network.password("dac-nl"))
    auditor.get_by_role("button", name="Sign in").click()
    expect(auditor.get_by_role("heading", level=1)).to_contain_text("Audit")
    expect(auditor.get_by_text(re.compile("intact", re.I)).first).to_be_visible()
    check_page(auditor, "journey-auditor-trail")

    auditor.get_by_label("Dataset").fill("nl-diverse")
    auditor.get_by_role("button", name="Filter").click()
    expect(auditor).to_have_url(re.compile(r"dataset=nl-diverse"))
    rows = auditor.get_by_role("row").filter(has_text="nl-diverse")
    expect(rows.first).to_be_visible()
    check_page(auditor, "journey-auditor-filtered")

    auditor.get_by_role("link", name="Datasets", exact=True).first.click()
    expect(auditor.get_by_text("nl-diverse").first).to_be_visible()
    check_page(auditor, "journey-operator-datasets")


def test_the_reading_paths_work_without_javascript(portal_network: PortalNetwork,
                                                   new_context: NewContext) -> None:
    """Search, catalogue, a dataset and the allele frequencies, in a browser with JavaScript off:
    everything is in the server's HTML (the charts' numbers are in their tables)."""
    variant = a_variant(portal_network, "fi", "fi-reference")
    page = new_context(base_url=portal_network.hub, java_script_enabled=False).new_page()
    page.goto("/portal/")
    page.get_by_label(re.compile("Variant, gene or HPO term")).fill(variant)
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/portal/search\?"))
    for dataset in ("fi-biobank", "fi-reference", "se-cohort", "se-register", "nl-diverse"):
        expect(page.get_by_role("link", name=dataset, exact=True).first).to_be_visible()
    expect(page.get_by_role("table").filter(has_text="answered").first).to_be_visible()

    page.goto("/portal/catalogue")
    page.get_by_role("checkbox").first.check()
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"/portal/catalogue\?"))
    page.get_by_role("link", name=re.compile("CEU")).first.click()
    expect(page).to_have_url(re.compile(r"/portal/datasets/"))
    expect(page.get_by_text("How to get access").first).to_be_visible()

    page.goto(f"/portal/frequencies?variant={variant}")
    expect(page.get_by_role("table").filter(has_text="fi-reference").first).to_be_visible()
    expect(page.get_by_role("cell", name=re.compile(r"^0\.\d+$")).first).to_be_visible()
