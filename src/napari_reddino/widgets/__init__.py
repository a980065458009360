"""napari docks (Qt only here): each one a thin file over the GUI-free core.

The manifest (``napari.yaml``) names each dock class by module, so importing this
package stays cheap and pulls in no dock until napari asks for it.
"""
