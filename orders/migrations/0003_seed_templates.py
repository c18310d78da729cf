"""Seed the order and welcome templates (email, SMS, push; English and French) the orders domain
asks notifications to send. Kept in the orders app: the templates are this domain's words."""
from __future__ import annotations

from django.db import migrations

from notifications.seeding import template_seeder

SAMPLE = {
    "orderId": "ord_123",
    "total": "59.98",
    "currency": "USD",
    "itemCount": 2,
    "reason": "card_declined",
    "carrier": "simulated-carrier",
    "trackingNumber": "SIM0123456789AB",
    "userId": "user_1",
    "email": "ada@example.com",
}

HTML = (
    '<div style="font-family:sans-serif">{content}'
    "<p style=\"color:#666;font-size:12px\">{ref}: {{{{ orderId }}}}</p></div>"
)

# (key, locale): (email subject, email text, email html, sms text, push title, push text)
TEMPLATES = {
    ("order_confirmed", "en"): (
        "Order {{ orderId }} confirmed",
        "Hello,\n\nThank you for your order of {{ itemCount }} item{{ itemCount|pluralize }} "
        "({{ total }} {{ currency }}). It is confirmed and being prepared for shipping"
        "{% if trackingNumber %}; tracking number {{ trackingNumber }}{% endif %}.\n\n"
        "Order reference: {{ orderId }}\n",
        HTML.format(
            content="<p>Hello,</p><p>Thank you for your order of {{ itemCount }} item{{ itemCount|pluralize }} "
            "(<strong>{{ total }} {{ currency }}</strong>). It is confirmed and being prepared for shipping"
            "{% if trackingNumber %}; tracking number {{ trackingNumber }}{% endif %}.</p>",
            ref="Order reference",
        ),
        "Order {{ orderId }} confirmed: {{ total }} {{ currency }}.",
        "Order confirmed",
        "{{ itemCount }} item{{ itemCount|pluralize }}, {{ total }} {{ currency }}.",
    ),
    ("order_confirmed", "fr"): (
        "Commande {{ orderId }} confirmée",
        "Bonjour,\n\nMerci pour votre commande de {{ itemCount }} article{{ itemCount|pluralize }} "
        "({{ total }} {{ currency }}). Elle est confirmée et en préparation"
        "{% if trackingNumber %} ; numéro de suivi {{ trackingNumber }}{% endif %}.\n\n"
        "Référence de la commande : {{ orderId }}\n",
        HTML.format(
            content="<p>Bonjour,</p><p>Merci pour votre commande de {{ itemCount }} article{{ itemCount|pluralize }} "
            "(<strong>{{ total }} {{ currency }}</strong>). Elle est confirmée et en préparation"
            "{% if trackingNumber %} ; numéro de suivi {{ trackingNumber }}{% endif %}.</p>",
            ref="Référence de la commande",
        ),
        "Commande {{ orderId }} confirmée : {{ total }} {{ currency }}.",
        "Commande confirmée",
        "{{ itemCount }} article{{ itemCount|pluralize }}, {{ total }} {{ currency }}.",
    ),
    ("order_cancelled", "en"): (
        "Order {{ orderId }} cancelled",
        "Hello,\n\nYour order {{ orderId }} ({{ total }} {{ currency }}) has been cancelled"
        "{% if reason %} ({{ reason }}){% endif %}. Anything you paid for it is refunded.\n",
        HTML.format(
            content="<p>Hello,</p><p>Your order of <strong>{{ total }} {{ currency }}</strong> has been "
            "cancelled{% if reason %} ({{ reason }}){% endif %}. Anything you paid for it is refunded.</p>",
            ref="Order reference",
        ),
        "Order {{ orderId }} cancelled{% if reason %} ({{ reason }}){% endif %}.",
        "Order cancelled",
        "Order {{ orderId }} cancelled{% if reason %} ({{ reason }}){% endif %}.",
    ),
    ("order_cancelled", "fr"): (
        "Commande {{ orderId }} annulée",
        "Bonjour,\n\nVotre commande {{ orderId }} ({{ total }} {{ currency }}) a été annulée"
        "{% if reason %} ({{ reason }}){% endif %}. Tout montant payé vous est remboursé.\n",
        HTML.format(
            content="<p>Bonjour,</p><p>Votre commande de <strong>{{ total }} {{ currency }}</strong> a été "
            "annulée{% if reason %} ({{ reason }}){% endif %}. Tout montant payé vous est remboursé.</p>",
            ref="Référence de la commande",
        ),
        "Commande {{ orderId }} annulée{% if reason %} ({{ reason }}){% endif %}.",
        "Commande annulée",
        "Commande {{ orderId }} annulée{% if reason %} ({{ reason }}){% endif %}.",
    ),
    ("order_shipped", "en"): (
        "Order {{ orderId }} shipped",
        "Hello,\n\nYour order {{ orderId }} is on its way with {{ carrier }}"
        "{% if trackingNumber %}, tracking number {{ trackingNumber }}{% endif %}.\n",
        HTML.format(
            content="<p>Hello,</p><p>Your order is on its way with {{ carrier }}"
            "{% if trackingNumber %}, tracking number <strong>{{ trackingNumber }}</strong>{% endif %}.</p>",
            ref="Order reference",
        ),
        "Order {{ orderId }} shipped{% if trackingNumber %}: {{ trackingNumber }}{% endif %}.",
        "Order shipped",
        "Order {{ orderId }} is on its way.",
    ),
    ("order_shipped", "fr"): (
        "Commande {{ orderId }} expédiée",
        "Bonjour,\n\nVotre commande {{ orderId }} est en route avec {{ carrier }}"
        "{% if trackingNumber %}, numéro de suivi {{ trackingNumber }}{% endif %}.\n",
        HTML.format(
            content="<p>Bonjour,</p><p>Votre commande est en route avec {{ carrier }}"
            "{% if trackingNumber %}, numéro de suivi <strong>{{ trackingNumber }}</strong>{% endif %}.</p>",
            ref="Référence de la commande",
        ),
        "Commande {{ orderId }} expédiée{% if trackingNumber %} : {{ trackingNumber }}{% endif %}.",
        "Commande expédiée",
        "La commande {{ orderId }} est en route.",
    ),
    ("welcome", "en"): (
        "Welcome!",
        "Hello,\n\nWelcome aboard: your account ({{ email }}) is ready.\n",
        '<div style="font-family:sans-serif"><p>Hello,</p><p>Welcome aboard: your account '
        "(<strong>{{ email }}</strong>) is ready.</p></div>",
        "Welcome! Your account is ready.",
        "Welcome!",
        "Your account is ready.",
    ),
    ("welcome", "fr"): (
        "Bienvenue !",
        "Bonjour,\n\nBienvenue : votre compte ({{ email }}) est prêt.\n",
        '<div style="font-family:sans-serif"><p>Bonjour,</p><p>Bienvenue : votre compte '
        "(<strong>{{ email }}</strong>) est prêt.</p></div>",
        "Bienvenue ! Votre compte est prêt.",
        "Bienvenue !",
        "Votre compte est prêt.",
    ),
}


seed, unseed = template_seeder(TEMPLATES, SAMPLE)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_reservation_expiry_schedule"),
        ("notifications", "0003_dispatch_schedule"),
    ]
    operations = [migrations.RunPython(seed, unseed)]
