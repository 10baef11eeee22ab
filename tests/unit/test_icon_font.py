"""The offline icon font goes into JupyterLab's custom.css, never over a user's own custom.css."""

import base64

from singleuser.icon_font import MARKER, install


def test_installs_the_font_and_the_icon_rules(tmp_path):
    font = tmp_path / "icons.woff2"
    font.write_bytes(b"wOF2-fake-font-bytes")
    assert "installed" in install(tmp_path / "cfg", font)
    css = (tmp_path / "cfg" / "custom" / "custom.css").read_text()
    assert css.startswith(MARKER)
    assert base64.b64encode(b"wOF2-fake-font-bytes").decode() in css
    assert ".material-icons {" in css and "font-family: 'Material Icons'" in css
    assert "http" not in css, "nothing may be fetched from the network"


def test_leaves_a_users_own_custom_css_alone(tmp_path):
    font = tmp_path / "icons.woff2"
    font.write_bytes(b"x")
    own = tmp_path / "cfg" / "custom" / "custom.css"
    own.parent.mkdir(parents=True)
    own.write_text("body { color: teal; }")
    assert "user's own" in install(tmp_path / "cfg", font)
    assert own.read_text() == "body { color: teal; }"


def test_a_missing_font_is_reported(tmp_path):
    assert "icon font not found" in install(tmp_path, tmp_path / "nope.woff2")
    assert not (tmp_path / "custom").exists()
