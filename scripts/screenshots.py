#!/usr/bin/env python3
"""`make screenshots`: the portal's main pages and dialogs at 1280 px and 390 px, into
docs/screenshots/ (the README's gallery shows the key ones).

It starts the portal the way the browser tests do (gunicorn on a temporary SQLite
database, tests/live_server.py), fills it with demo members, methods, sign-ins and a
member page spread over the last 90 days, then walks the pages in Debian's chromium
through Playwright as a member, a newcomer setting up an authenticator app, a member
adding a passkey (Chromium's virtual authenticator) and an operator. Viewport
screenshots at a device pixel ratio of 1 keep the files small.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--only NAME...]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser_helpers import (  # noqa: E402
    CHROMIUM_ARGS,
    PASSWORD,
    Authenticator,
    VirtualAuthenticator,
    current_step,
)
from live_server import MemberSpec, enrol, run_server  # noqa: E402
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

DEMO = MemberSpec("demo", PASSWORD, name="デモ 花子", email="hanako@example.com")
NEWCOMER = MemberSpec("sato", PASSWORD, name="佐藤 一郎", email="sato@example.com")
OPERATOR = MemberSpec("admin", PASSWORD, name="管理 太郎", email="admin@example.com")
OTHERS = [
    ("tanaka", "田中 美咲"),
    ("suzuki", "鈴木 健太"),
    ("takahashi", "高橋 優子"),
    ("watanabe", "渡辺 大輔"),
    ("ito", "伊藤 さくら"),
    ("yamamoto", "山本 翔"),
    ("nakamura", "中村 結衣"),
    ("kobayashi", "小林 陽介"),
    ("kato", "加藤 真央"),
    ("yoshida", "吉田 拓海"),
    ("yamada", "山田 愛"),
    ("sasaki", "佐々木 蓮"),
    ("yamaguchi", "山口 美月"),
    ("matsumoto", "松本 悠斗"),
    ("inoue", "井上 七海"),
    ("kimura", "木村 颯太"),
    ("hayashi", "林 葵"),
    ("shimizu", "清水 湊"),
]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
]
PAGE_BODY = (
    "<h2>二段階認証を設定しましょう</h2>"
    "<p>%member:name% さん、会員ページへようこそ。アカウントを守るため、"
    '<a href="%url/rel:tfa:setting%">二段階認証設定ページ</a>で認証アプリを設定してください。</p>'
    "<ul><li>認証アプリ（おすすめ）</li><li>メール</li><li>SMS</li></ul>"
)
VIEWPORTS = {"desktop": (1280, 800, 1), "phone": (390, 844, 1)}


def seed(server) -> dict[str, str]:
    """Demo data in the server's database; returns the TOTP secrets of demo and admin."""
    from portal import audit, members, pages
    from portal.extensions import db
    from portal.models import AuditEvent, ContactMethod, MemberPage, TotpCredential
    from portal.twofactor import devices
    from portal.twofactor.crypto import secret_box

    rng = random.Random(10)  # noqa: S311 (demo data, the same on every run)
    now = datetime.now(UTC)
    with server.app_context():
        operator = members.find(OPERATOR.login_id)
        operator.is_operator = True
        for login_id, name in OTHERS:
            members.create(
                login_id,
                email=f"{login_id}@example.com",
                password=PASSWORD,
                name=name,
                phone=f"090-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
                now=now - timedelta(days=rng.randint(95, 200)),
            )
        db.session.commit()
    secrets = {}
    for login_id in (DEMO.login_id, OPERATOR.login_id):
        enrol(server, login_id)
    with server.app_context():
        for cred in db.session.scalars(db.select(TotpCredential)):
            secrets[cred.member.login_id] = secret_box().decrypt(cred.secret_encrypted)
        demo = members.find(DEMO.login_id)
        db.session.add(
            ContactMethod(member_id=demo.id, kind="email", created_at=now - timedelta(days=12))
        )
        for cred in db.session.scalars(db.select(TotpCredential)):
            cred.created_at = now - timedelta(days=70 if cred.member_id == demo.id else 88)
        # Most of the others set up a method at some point in the last 90 days.
        for i, (login_id, _) in enumerate(OTHERS[:13]):
            m = members.find(login_id)
            when = now - timedelta(days=int(85 * (1 - i / 13) ** 1.5) + 1, hours=rng.randint(0, 9))
            kind = ("app", "app", "email", "sms", "app")[i % 5]
            if kind == "app":
                cred = TotpCredential(
                    member_id=m.id,
                    secret_encrypted=secret_box().encrypt("JBSWY3DPEHPK3PXP"),
                    created_at=when,
                    last_used_at=when + timedelta(days=1),
                )
                db.session.add(cred)
            else:
                db.session.add(ContactMethod(member_id=m.id, kind=kind, created_at=when))
            m.preferred_method = kind
            m.last_second_step_at = now - timedelta(
                days=rng.randint(0, 6), hours=rng.randint(1, 20)
            )
        db.session.commit()
        from portal.twofactor import recovery

        for login_id, _ in OTHERS[:13]:
            recovery.issue(members.find(login_id), now)
        devices.remember(
            demo,
            now - timedelta(days=3),
            timedelta(days=30),
            label="Chrome（Windows）",
            ip="203.0.113.24",
        )
        devices.remember(
            demo,
            now - timedelta(days=1),
            timedelta(days=30),
            label="Safari（iPhone）",
            ip="198.51.100.7",
        )
        demo.last_second_step_at = now - timedelta(hours=2)
        db.session.commit()
        # Sign-ins of the last 30 days, by method, for the overview and the audit log.
        everyone = [members.find(login_id) for login_id, _ in OTHERS] + [demo]
        for _ in range(60):
            m = rng.choice(everyone)
            method = m.preferred_method if m.preferred_method else None
            audit.record(
                "signin.success",
                subject=m,
                actor=m,
                method=method,
                ip=f"203.0.113.{rng.randint(2, 250)}",
                user_agent=rng.choice(USER_AGENTS),
            )
        audit.record(
            "signin.second_step_failed",
            subject=demo,
            actor=demo,
            method="app",
            ip="198.51.100.77",
            user_agent=USER_AGENTS[0],
        )
        for event in db.session.scalars(db.select(AuditEvent)):
            event.created_at = now - timedelta(minutes=rng.randint(30, 60 * 24 * 28))
        db.session.commit()
        page = pages.save(
            None, title="二段階認証のご案内", slug="tfa-guide", body=PAGE_BODY, by=OPERATOR.login_id
        )
        if hasattr(MemberPage, "listed"):
            page.listed = True
            db.session.commit()
        seed_forms(rng, now)
    return secrets


# Longer than the submissions list shows (its detail page has it whole).
LONG_NOTE = (
    "車椅子で参加します。会場の入口から席までの段差の有無と、エレベーターの場所を"
    "事前に教えていただけますか。\n当日は介助者が一名同行します。介助者の席も隣に"
    "用意していただけると助かります。"
)


def seed_forms(rng: random.Random, now: datetime) -> None:
    """The example form (docs/examples/apply-form.json) with a few submissions, for the
    admin's form pages."""
    from portal import member_forms, members

    spec = member_forms.loads((ROOT / "docs" / "examples" / "apply-form.json").read_text())
    form = member_forms.save(None, spec, by=OPERATOR.login_id)
    for i, (login_id, _) in enumerate(OTHERS[:6]):
        when = now - timedelta(days=6 - i, hours=rng.randint(0, 8))
        answers = {
            "course": ("入門コース", "応用コース")[i % 2],
            "date": (now + timedelta(days=14 + i)).date().isoformat(),
            "people": str(rng.randint(1, 4)),
            "phone": f"090-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
            "note": ("", "駐車場を利用したいです。", LONG_NOTE)[i % 3],
            "agree": "1",
        }
        draft = member_forms.start_draft(form, members.find(login_id), answers, when)
        member_forms.submit(
            draft, when, second_step_at=when if i % 2 else None, stepped_up=bool(i % 2)
        )


class Shooter:
    """Viewport screenshots named ``<name>-<family>.png`` (family: desktop or phone)."""

    def __init__(self, out: Path, family: str, only: set[str]):
        self.out = out
        self.family = family
        self.only = only
        self.taken: list[Path] = []

    def __call__(self, page: Page, name: str) -> None:
        if self.only and name not in self.only:
            return
        page.evaluate("document.fonts.ready")
        page.wait_for_timeout(150)  # the dialog's opening animation
        path = self.out / f"{name}-{self.family}.png"
        page.screenshot(path=str(path), animations="disabled", caret="hide")
        self.taken.append(path)


def sign_in(page: Page, url: str, member: MemberSpec) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("ログインID").fill(member.login_id)
    page.get_by_label("パスワード", exact=True).fill(member.password)
    page.get_by_role("button", name="ログイン", exact=True).click()


def enter_code(page: Page, url: str, app: Authenticator) -> None:
    page.get_by_label("認証コード", exact=True).fill(app.fresh_code())
    page.get_by_role("button", name="認証する").click()
    expect(page).not_to_have_url(f"{url}/login/verify")


def run(out: Path, only: set[str], family: str, browser: Browser, server, secrets) -> list:
    """Walk every page once in a context of the given viewport family."""
    url = server.url
    shoot = Shooter(out, family, only)
    width, height, scale = VIEWPORTS[family]

    def page_for() -> Page:
        context = browser.new_context(
            locale="ja-JP",
            timezone_id="Asia/Tokyo",
            viewport={"width": width, "height": height},
            device_scale_factor=scale,
        )
        context.set_default_timeout(15_000)
        return context.new_page()

    demo_app = Authenticator(secrets[DEMO.login_id])
    demo_app.last_step = server.demo_step
    admin_app = Authenticator(secrets[OPERATOR.login_id])
    admin_app.last_step = server.admin_step

    # A member: sign-in, the code page, マイページ, settings, member info, a member page.
    page = page_for()
    page.goto(f"{url}/login")
    shoot(page, "login")
    sign_in(page, url, DEMO)
    expect(page).to_have_url(f"{url}/login/verify")
    page.get_by_label("認証コード", exact=True).fill("482913")
    page.get_by_label("認証コード", exact=True).blur()
    shoot(page, "verify")
    enter_code(page, url, demo_app)
    server.demo_step = demo_app.last_step
    shoot(page, "mypage")
    if family == "phone":
        page.get_by_role("button", name="メニュー").click()
        shoot(page, "menu")
        page.get_by_role("button", name="メニュー").click()
    page.goto(f"{url}/settings/2fa")
    shoot(page, "settings")
    page.goto(f"{url}/settings/profile")
    shoot(page, "profile")
    page.goto(f"{url}/pages/tfa-guide")
    shoot(page, "member-page")
    # A form: 入力 with its errors, 確認, サンキュー.
    page.goto(f"{url}/forms/apply")
    shoot(page, "form-input")
    page.get_by_role("button", name="確認する").click()
    expect(page.locator("#form-errors")).to_be_visible()
    shoot(page, "form-input-errors")
    page.get_by_label("コース").select_option("応用コース")
    page.get_by_label("希望日").fill("2026-12-24")
    page.get_by_label("人数").fill("2")
    page.get_by_label("ご要望").fill("駐車場を利用したいです。車椅子で伺います。")
    page.get_by_label("利用規約に同意する").check()
    page.get_by_role("button", name="確認する").click()
    expect(page.locator("#form-answers")).to_be_visible()
    shoot(page, "form-confirm")
    page.get_by_role("button", name="送信する").click()
    expect(page.locator("ol.form-steps [aria-current=step]")).to_be_visible()
    shoot(page, "form-thanks")
    page.context.close()

    # A newcomer sets up an authenticator app: the banner, the QR dialog, the codes.
    newcomer = MemberSpec(f"{NEWCOMER.login_id}{family}", PASSWORD, name=NEWCOMER.name)
    page = page_for()
    sign_in(page, url, newcomer)
    expect(page).to_have_url(f"{url}/")
    page.goto(f"{url}/settings/2fa")
    page.locator("#section-app").get_by_role("link", name="設定を開始する").click()
    dialog = page.locator("dialog#dialog")
    heading = dialog.locator("#dialog-title")
    expect(heading).to_be_visible()
    if heading.inner_text() == "本人確認":
        shoot(page, "dialog-reauth")
        dialog.get_by_label("パスワード", exact=True).fill(PASSWORD)
        dialog.get_by_role("button", name="確認する").click()
    expect(heading).to_have_text("認証アプリによる認証の設定")
    shoot(page, "dialog-setup")
    secret = dialog.locator("#totp-secret").inner_text().replace(" ", "")
    dialog.get_by_label("アプリに表示された6桁の認証コード").fill(
        Authenticator(secret).fresh_code()
    )
    dialog.get_by_role("button", name="確認する").click()
    expect(dialog.locator("#recovery-codes li")).to_have_count(10)
    shoot(page, "dialog-recovery-codes")
    page.context.close()

    # Passkeys: a member names a key, the browser's prompt (Chromium's virtual
    # authenticator answers it), the key in settings, then the passkey second step.
    member = MemberSpec(f"passkey{family}", PASSWORD, name="光田 ひかり")
    page = page_for()
    authenticator = VirtualAuthenticator(page, presence=False)
    sign_in(page, url, member)
    expect(page).to_have_url(f"{url}/")
    page.goto(f"{url}/settings/2fa")
    page.locator("#section-passkey").get_by_role("link", name="設定を開始する").click()
    dialog = page.locator("dialog#dialog")
    expect(dialog.locator("#dialog-title")).to_have_text("パスキー・セキュリティキーの登録")
    dialog.get_by_label("パスキーの名前").fill("仕事用のMacBook")
    shoot(page, "dialog-passkey-name")
    dialog.get_by_role("button", name="次へ").click()
    expect(dialog.get_by_role("button", name="パスキーを作成する")).to_be_visible()
    shoot(page, "dialog-passkey-prompt")
    authenticator.presence(True)
    dialog.get_by_role("button", name="パスキーを作成する").click()
    expect(dialog.locator("#recovery-codes li")).to_have_count(10)
    dialog.get_by_role("link", name="完了").click()
    expect(dialog).to_be_hidden()
    page.locator("#section-passkey").evaluate("s => s.scrollIntoView()")
    shoot(page, "settings-passkey")
    authenticator.presence(False)
    if family == "phone":
        page.get_by_role("button", name="メニュー").click()
    page.locator("header").get_by_role("button", name="ログアウト").click()
    expect(page).to_have_url(f"{url}/login")
    shoot(page, "login-passkey")
    sign_in(page, url, member)
    expect(page).to_have_url(f"{url}/login/verify")
    shoot(page, "verify-passkey")
    page.context.close()

    # An operator: the admin area.
    page = page_for()
    sign_in(page, url, OPERATOR)
    enter_code(page, url, admin_app)
    server.admin_step = admin_app.last_step
    page.goto(f"{url}/admin/")
    shoot(page, "admin-overview")
    page.goto(f"{url}/admin/members")
    shoot(page, "admin-members")
    page.goto(f"{url}/admin/members/{DEMO.login_id}")
    shoot(page, "admin-member")
    page.goto(f"{url}/admin/audit")
    shoot(page, "admin-audit")
    page.goto(f"{url}/admin/policy")
    shoot(page, "admin-policy")
    page.goto(f"{url}/admin/api-tokens")
    shoot(page, "admin-api-tokens")
    page.goto(f"{url}/admin/forms")
    shoot(page, "admin-forms")
    page.goto(f"{url}/admin/forms/apply/submissions")
    shoot(page, "admin-form-submissions")
    page.locator("#submission-table tbody tr", has_text="…").first.locator("a").click()
    expect(page.locator("#submission-answers")).to_be_visible()
    shoot(page, "admin-form-submission")
    page.goto(f"{url}/admin/forms")
    page.get_by_role("link", name="編集").first.click()
    expect(page.locator("#form-editor")).to_be_visible()
    shoot(page, "admin-form-edit")
    page.locator("#field-1-label").scroll_into_view_if_needed()
    shoot(page, "admin-form-fields")
    page.goto(f"{url}/admin/import")
    page.set_input_files(
        "#file",
        files=[
            {
                "name": "members.csv",
                "mimeType": "text/csv",
                "buffer": (
                    "login_id,email,name,phone,operator\n"
                    "suzuki,suzuki@example.com,鈴木 次郎,090-1234-5678,0\n"
                    "tanaka,tanaka@example,田中 三郎,,\n"
                    "suzuki,other@example.com,,,\n"
                    "kato,kato@example.com,加藤 四郎,12345,maybe\n"
                ).encode(),
            }
        ],
    )
    page.get_by_role("button", name="確認する（書き込みません）").click()
    expect(page.locator("#import-report")).to_be_visible()
    shoot(page, "admin-import")
    page.context.close()
    return shoot.taken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--only", nargs="*", default=[], help="names to take (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    newcomers = [
        MemberSpec(f"{NEWCOMER.login_id}{label}", PASSWORD, name=NEWCOMER.name)
        for label in VIEWPORTS
    ] + [MemberSpec(f"passkey{label}", PASSWORD, name="光田 ひかり") for label in VIEWPORTS]
    taken = []
    with (
        tempfile.TemporaryDirectory(prefix="portal-screenshots-") as tmp,
        run_server(Path(tmp), [DEMO, OPERATOR, *newcomers], workers=1, threads=4) as server,
        sync_playwright() as playwright,
    ):
        secrets = seed(server)
        # enrol() used the current step of both apps.
        server.demo_step = server.admin_step = current_step()
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        try:
            for family in VIEWPORTS:
                taken += run(args.out, set(args.only), family, browser, server, secrets)
        finally:
            browser.close()
    for path in taken:
        print(f"{path}  {path.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
