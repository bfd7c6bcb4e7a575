"""The course's locustfile: every user posts one penguin to /predict, then thinks 1 to 2.5 s."""

from locust import HttpUser, between, task


class PenguinUser(HttpUser):
    wait_time = between(1, 2.5)

    @task
    def predict(self):
        self.client.post(
            "/predict",
            json={
                "island": "Biscoe",
                "culmen_length_mm": 50.0,
                "culmen_depth_mm": 18.5,
                "flipper_length_mm": 200.0,
                "body_mass_g": 4000.0,
                "sex": "MALE",
            },
        )
