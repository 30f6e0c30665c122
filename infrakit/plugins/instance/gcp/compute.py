"""The Compute API as the plugin uses it: one zone's instances, every failure a `PluginError`
an operator can act on, and every insert and delete waited on with a deadline."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import google.auth
import google.auth.exceptions
from google.api_core import exceptions as api_exceptions
from google.api_core import retry
from google.api_core.client_options import ClientOptions
from google.api_core.extended_operation import ExtendedOperation
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import compute_v1
from google.protobuf.json_format import ParseError

from infrakit.duration import format_duration
from infrakit.plugins.instance.gcp.config import Location, is_plain_http
from infrakit.spi.errors import PluginError

COMPUTE_SCOPE = "https://www.googleapis.com/auth/compute"
REQUEST_TIMEOUT = 60.0
"""Seconds one API request may take (retries of a read included)."""
_READ_RETRY = retry.Retry(
    initial=0.2,
    maximum=5.0,
    multiplier=2.0,
    predicate=retry.if_exception_type(
        api_exceptions.ServiceUnavailable,
        api_exceptions.DeadlineExceeded,
        api_exceptions.TooManyRequests,
    ),
    timeout=REQUEST_TIMEOUT,
)
_PAGE = 500


class Compute:
    """The instances of one zone, through `compute_v1.InstancesClient` over REST.

    The client and its credentials are made on first use, so a plugin is made without any
    network call: over plain http (an emulator) with no credentials, else with Google's default
    credentials, whose project is the project when none is given.
    """

    def __init__(
        self,
        *,
        project: str | None,
        zone: str | None,
        endpoint: str | None,
        operation_timeout: float,
        client: compute_v1.InstancesClient | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.operation_timeout = operation_timeout
        self._project = project
        self._zone = zone
        self._client = client
        self._lock = threading.Lock()

    # -- where, and through what ----------------------------------------------------------

    def location(self) -> Location:
        """The project and zone; `PluginError` saying how to set one that is not known."""
        if self._zone is None:
            raise PluginError(
                "no zone: set the gcp plugin's Options.Zone or $CLOUDSDK_COMPUTE_ZONE"
            )
        if self._project is None:
            self.client()  # default credentials may name a project
        if self._project is None:
            raise PluginError(
                "no project: set the gcp plugin's Options.Project or $GOOGLE_CLOUD_PROJECT"
            )
        return Location(self._project, self._zone)

    def client(self) -> compute_v1.InstancesClient:
        """The client, made on first use."""
        with self._lock:
            if self._client is None:
                credentials, project = self._credentials()
                if self._project is None and project:
                    self._project = project
                options = ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None
                self._client = compute_v1.InstancesClient(
                    credentials=credentials, transport="rest", client_options=options
                )
            return self._client

    def _credentials(self) -> tuple[Credentials, str | None]:
        if is_plain_http(self.endpoint):
            return AnonymousCredentials(), None  # type: ignore[no-untyped-call]
        try:
            credentials, project = google.auth.default(scopes=[COMPUTE_SCOPE])
        except google.auth.exceptions.GoogleAuthError as error:
            raise PluginError(
                f"no usable Google credentials for Compute Engine: {error} (set"
                " $GOOGLE_APPLICATION_CREDENTIALS, or run 'gcloud auth application-default"
                " login')"
            ) from None
        return credentials, project

    # -- instances ------------------------------------------------------------------------

    def get(self, name: str) -> compute_v1.Instance | None:
        """The instance called `name`, or None if there is none."""
        where = self.location()
        with self.errors(f"read instance {name}"):
            try:
                return self.client().get(
                    project=where.project,
                    zone=where.zone,
                    instance=name,
                    retry=_READ_RETRY,
                    timeout=REQUEST_TIMEOUT,
                )
            except api_exceptions.NotFound:
                return None

    def list(self, filter_: str) -> list[compute_v1.Instance]:
        """Every instance of the zone that `filter_` matches ("" for all), every page."""
        where = self.location()
        request = compute_v1.ListInstancesRequest(
            project=where.project, zone=where.zone, max_results=_PAGE
        )
        if filter_:
            request.filter = filter_
        with self.errors("list instances"):
            pages = self.client().list(request=request, retry=_READ_RETRY, timeout=REQUEST_TIMEOUT)
            return list(pages)

    def insert(self, instance: compute_v1.Instance) -> None:
        """Create `instance` and wait until it is made."""
        where = self.location()
        doing = f"create instance {instance.name}"
        with self.errors(doing):
            operation = self.client().insert(
                project=where.project,
                zone=where.zone,
                instance_resource=instance,
                timeout=REQUEST_TIMEOUT,
            )
            self._wait(operation, doing)

    def delete(self, name: str) -> bool:
        """Delete the instance called `name` and wait until it is gone; False if there was
        none."""
        where = self.location()
        doing = f"delete instance {name}"
        with self.errors(doing):
            try:
                operation = self.client().delete(
                    project=where.project, zone=where.zone, instance=name, timeout=REQUEST_TIMEOUT
                )
                self._wait(operation, doing)
            except api_exceptions.NotFound:
                return False
        return True

    def set_metadata(self, name: str, metadata: compute_v1.Metadata) -> None:
        """Replace the instance's metadata (its `fingerprint` says which version it replaces)."""
        where = self.location()
        doing = f"set the metadata of instance {name}"
        with self.errors(doing):
            operation = self.client().set_metadata(
                project=where.project,
                zone=where.zone,
                instance=name,
                metadata_resource=metadata,
                timeout=REQUEST_TIMEOUT,
            )
            self._wait(operation, doing)

    def set_labels(self, name: str, labels: dict[str, str], fingerprint: str) -> None:
        """Replace the instance's labels (`fingerprint`: the version they replace)."""
        where = self.location()
        doing = f"set the labels of instance {name}"
        request = compute_v1.InstancesSetLabelsRequest(labels=labels, label_fingerprint=fingerprint)
        with self.errors(doing):
            operation = self.client().set_labels(
                project=where.project,
                zone=where.zone,
                instance=name,
                instances_set_labels_request_resource=request,
                timeout=REQUEST_TIMEOUT,
            )
            self._wait(operation, doing)

    # -- failures -------------------------------------------------------------------------

    def _wait(self, operation: ExtendedOperation, doing: str) -> None:
        """Wait for `operation` to finish, at most `operation_timeout` seconds."""
        try:
            operation.result(timeout=self.operation_timeout)  # type: ignore[no-untyped-call]
        except TimeoutError:
            raise PluginError(
                f"Compute Engine did not {doing} within"
                f" {format_duration(self.operation_timeout)} (operation {operation.name});"
                " it may still do it (OperationTimeout sets how long to wait)"
            ) from None

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn the API's, the transport's and the credentials' errors into `PluginError`s."""
        try:
            yield
        except PluginError:
            raise
        except api_exceptions.GoogleAPICallError as error:
            raise PluginError(f"Compute Engine refused to {doing}: {explain(error)}") from None
        except api_exceptions.RetryError as error:
            raise PluginError(
                f"Compute Engine did not answer in time to {doing}: {error.cause or error}"
            ) from None
        except google.auth.exceptions.GoogleAuthError as error:
            raise PluginError(f"cannot authenticate to {doing}: {error}") from None
        except OSError as error:
            raise PluginError(
                f"cannot reach Compute Engine at {self._where()} to {doing}: {error}"
            ) from None
        except ParseError as error:
            raise PluginError(
                f"{self._where()} did not answer as Compute Engine does, to {doing}: {error}"
            ) from None

    def _where(self) -> str:
        return self.endpoint or "compute.googleapis.com"


def explain(error: Any) -> str:
    """An API error in words: GCP's message and the details it gives (a failed operation's
    message alone may be just "NOT FOUND"), and the HTTP status."""
    message = str(getattr(error, "message", "") or error)
    for detail in getattr(error, "errors", None) or ():
        text = detail.get("message") if isinstance(detail, dict) else getattr(detail, "message", "")
        if text and str(text) not in message:
            message = f"{message}: {text}"
    code = getattr(error, "code", None)
    return f"{message} (HTTP {code})" if code else message
