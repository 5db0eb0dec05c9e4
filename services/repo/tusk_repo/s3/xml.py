"""S3's XML answers and errors."""

from __future__ import annotations

from datetime import datetime
from xml.etree import ElementTree as ET

from starlette.responses import Response

from tusk.errors import TuskError

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def element(tag: str, *children: ET.Element, text: str | None = None,
            **attrs: str) -> ET.Element:
    node = ET.Element(tag, attrs)
    node.text = text
    node.extend(children)
    return node


def leaf(tag: str, value: object) -> ET.Element:
    return element(tag, text=str(value).lower() if isinstance(value, bool) else str(value))


def xml_response(root: ET.Element, status_code: int = 200,
                 headers: dict[str, str] | None = None, *, namespace: bool = True) -> Response:
    if namespace:  # S3's results have it; its error documents do not, and clients expect that
        root.set("xmlns", NS)
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
    return Response(body, status_code=status_code, media_type="application/xml",
                    headers=headers)


class S3Error(Exception):
    """An error answered as S3 does: an XML body with a code clients switch on."""

    def __init__(self, status_code: int, code: str, message: str, resource: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.resource = resource

    def response(self, request_id: str, *, head: bool = False) -> Response:
        if head:  # HEAD answers carry no body
            return Response(status_code=self.status_code,
                            headers={"x-amz-request-id": request_id})
        root = element("Error", leaf("Code", self.code), leaf("Message", self.message),
                       leaf("Resource", self.resource), leaf("RequestId", request_id))
        return xml_response(root, self.status_code, {"x-amz-request-id": request_id},
                            namespace=False)


_BY_TUSK_CODE = {
    "invalid_argument": (400, "InvalidArgument"),
    "unauthorized": (403, "AccessDenied"),
    "not_found": (404, "NoSuchKey"),
    "already_exists": (409, "BucketAlreadyOwnedByYou"),
    "conflict": (409, "OperationAborted"),
    "payload_too_large": (400, "EntityTooLarge"),
    "range_not_satisfiable": (416, "InvalidRange"),
    "unavailable": (503, "ServiceUnavailable"),
}


def from_tusk(error: TuskError, resource: str) -> S3Error:
    status, code = _BY_TUSK_CODE.get(error.code, (500, "InternalError"))
    message = error.message
    # Messages that start with an S3 code ("SignatureDoesNotMatch: …") carry it.
    head, sep, rest = message.partition(": ")
    if sep and head.isalnum() and head[:1].isupper():
        code, message = head, rest
        if code == "XAmzContentSHA256Mismatch" or code == "IncompleteBody":
            status = 400
    return S3Error(status, code, message, resource)
