"""Make the Rucio extension's icons render without internet access.

rucio-jupyterlab loads its icon font (Material Icons) with an @import from a public font service; on a closed
network the import fails and every icon shows as its name ("folder_open"). This writes JupyterLab's custom.css
with the same font embedded (from a local file the hub names: ServerSettings.icon_font) and the `.material-icons`
rules the import would have brought. A custom.css written by the user (without our marker) is left alone.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from singleuser import contract

MARKER = "/* dlaas: offline Material Icons (managed file; remove this line to keep your own) */"

RULES = """.material-icons {
  font-family: 'Material Icons';
  font-weight: normal;
  font-style: normal;
  font-size: 24px;
  line-height: 1;
  letter-spacing: normal;
  text-transform: none;
  display: inline-block;
  white-space: nowrap;
  word-wrap: normal;
  direction: ltr;
  font-feature-settings: 'liga';
  -webkit-font-smoothing: antialiased;
}
"""


def custom_css(font: bytes) -> str:
    data = base64.b64encode(font).decode()
    return (
        f"{MARKER}\n@font-face {{\n  font-family: 'Material Icons';\n  font-style: normal;\n  font-weight: 400;\n"
        f"  font-display: block;\n  src: url(data:font/woff2;base64,{data}) format('woff2');\n}}\n{RULES}"
    )


def install(config_dir: Path, font_path: str | Path) -> str:
    """Write <config_dir>/custom/custom.css with the font at `font_path` (ServerSettings.icon_font); returns what
    happened (for the log)."""
    if not font_path or not Path(font_path).is_file():
        unset = f"{contract.ICON_FONT.name} unset"
        return f"icon font not found ({font_path or unset}): Rucio icons show as names"
    font_path = Path(font_path)
    target = config_dir / "custom" / "custom.css"
    if target.exists() and not target.read_text(errors="replace").startswith(MARKER):
        return f"{target} is the user's own: icons left to it"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".custom.css.tmp")
    tmp.write_text(custom_css(font_path.read_bytes()))
    os.replace(tmp, target)
    return f"offline icon font installed in {target}"
