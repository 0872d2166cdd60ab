"""The plugins bundled with onedc-media, registered through the public entry-point group."""
