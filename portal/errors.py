"""Error pages in the member's language; htmx gets the same box as a partial."""

from __future__ import annotations

from flask import Flask
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .api import errors as api_errors
from .web.htmx import render


def _page(status: int, title: str, message: str):
    return render("errors/error.html", "errors/_error.html", status, title=title, message=message)


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return _page(
            400,
            _("操作を完了できませんでした"),
            _(
                "ページの有効期限が切れたか、不正な送信です。ページを再読み込みしてから、もう一度お試しください。"
            ),
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if api_errors.wanted():
            return api_errors.response(exc)
        messages = {
            403: _("このページを表示する権限がありません。"),
            404: _("お探しのページは見つかりませんでした。"),
            405: _("この操作は許可されていません。"),
            413: _("送信されたデータが大きすぎます。内容を減らして、もう一度お試しください。"),
            429: _("リクエストが多すぎます。しばらくしてから再度お試しください。"),
        }
        message = messages.get(exc.code or 500, _("リクエストを処理できませんでした。"))
        response = _page(exc.code or 500, _("エラー"), message)
        # Keep what the exception says beside its body: Retry-After (429), Allow (405).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(500)
    def server_error(exc):
        if api_errors.wanted():
            return api_errors.response(None, 500)
        return _page(
            500, _("エラー"), _("エラーが発生しました。しばらくしてから再度お試しください。")
        )
