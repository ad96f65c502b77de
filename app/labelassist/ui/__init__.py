"""The kiosk touch UI (Kivy). Nothing outside this package imports Kivy."""
