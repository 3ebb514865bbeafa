"""The probe texts (package data; see README.md here for their sources and licences)."""
