"""Partner formats (one module per partner, pure) and the gateway's database."""
