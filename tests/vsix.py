"""Real, minimal VS Code extensions (.vsix) built by the tests themselves."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

MANIFEST = """<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011">
  <Metadata><Identity Language="en-US" Id="{name}" Version="{version}" Publisher="{publisher}"/>
    <DisplayName>{name}</DisplayName><Description xml:space="preserve">devyard test extension</Description></Metadata>
  <Installation><InstallationTarget Id="Microsoft.VisualStudio.Code"/></Installation>
  <Dependencies/>
  <Assets><Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json" Addressable="true"/></Assets>
</PackageManifest>"""
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="utf-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension=".json" ContentType="application/json"/><Default Extension=".js" ContentType="application/javascript"/>'
    '<Default Extension=".vsixmanifest" ContentType="text/xml"/></Types>'
)


def make_vsix(
    folder: Path, publisher: str, name: str, version: str, event: str = "onStartupFinished", activate: str | None = None
) -> Path:
    """A real, minimal VS Code extension that writes $HOME/<publisher>.<name>-activated when it activates on `event`."""
    package = {
        "name": name,
        "publisher": publisher,
        "version": version,
        "engines": {"vscode": "^1.80.0"},
        "main": "./extension.js",
        "activationEvents": [event],
        "displayName": name,
    }
    body = (
        activate
        or f"require('fs').writeFileSync(require('path').join(process.env.HOME, '{publisher}.{name}-activated'), '{version}')"
    )
    code = f"exports.activate = () => {{ {body}; }};\nexports.deactivate = () => {{}};\n"
    path = folder / f"{publisher}.{name}-{version}.vsix"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("extension.vsixmanifest", MANIFEST.format(name=name, version=version, publisher=publisher))
        z.writestr("[Content_Types].xml", CONTENT_TYPES)
        z.writestr("extension/package.json", json.dumps(package))
        z.writestr("extension/extension.js", code)
    return path
