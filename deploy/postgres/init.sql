-- One database per service: no service reads another's.
CREATE DATABASE intake;
CREATE DATABASE referrals;
CREATE DATABASE gateways;
CREATE DATABASE notifications;
