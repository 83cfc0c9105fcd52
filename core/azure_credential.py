"""The Azure sign-in every Azure backend uses: DefaultAzureCredential, without log noise.

When no sign-in works, azure-identity logs a multi-line WARNING listing every credential it
tried, and Python prints it on stderr when the application has configured no logging. Our
front ends already turn the failure into one line naming the fix, so the library's loggers get a
NullHandler (the standard library-logging etiquette): silent by default, still visible to any
application that configures logging.
"""

from __future__ import annotations

import logging
from typing import Any

logging.getLogger("azure.identity").addHandler(logging.NullHandler())


def default_credential() -> Any:
    """az login, managed identity, workload identity or AZURE_CLIENT_ID/SECRET/TENANT_ID."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
