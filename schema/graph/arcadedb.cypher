// placeholder until the ArcadeDB probe reports
