"""Full-ranking evaluation: every item of the catalogue is ranked for every user."""
