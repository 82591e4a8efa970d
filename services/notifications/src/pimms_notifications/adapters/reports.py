"""`POST /sms/delivery-reports?token=...`: the SMS provider tells what became of an SMS.

401 without our shared token, 400 for a body that is not a report, 200 otherwise (a report for a
message we do not know is answered 200 and ignored: the provider must not retry it forever).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pimms_notifications.channels.brevo import (
    DeliveryReportError,
    SmsDeliveryReport,
    parse_delivery_report,
    report_token_valid,
)

MAX_REPORT_BYTES = 16_384

OnReport = Callable[[SmsDeliveryReport], Awaitable[None]]


def delivery_report_endpoint(
    *, token: str, on_report: OnReport
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint: checks the token, parses the report, hands it to `on_report`."""

    async def receive(request: Request) -> Response:
        given = request.query_params.get("token") or request.headers.get("x-report-token")
        if not report_token_valid(given=given, expected=token):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.body()
        if len(body) > MAX_REPORT_BYTES:
            return JSONResponse({"error": "too large"}, status_code=413)
        try:
            report = parse_delivery_report(body)
        except DeliveryReportError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        await on_report(report)
        return JSONResponse({"status": "ok"})

    return receive
