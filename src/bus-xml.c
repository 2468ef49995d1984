/* bus-xml.c: the interface definitions of dbus-xml/, the single source
 * of what we serve. Each <interface> is parsed once into members with
 * their in-signatures (checked against every call before a handler runs)
 * and properties, and its introspection XML is generated from them. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-private.h"
#include "i18n.h"
#include "log.h"
#include "util.h"

static void member_free(struct bus_member *m)
{
	for (size_t i = 0; i < m->n_args; i++) {
		free(m->args[i].name);
		free(m->args[i].type);
	}
	free(m->args);
	free(m->name);
	free(m->in_sig);
}

void bus_iface_def_free(struct bus_iface_def *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n_methods; i++)
		member_free(&d->methods[i]);
	for (size_t i = 0; i < d->n_signals; i++)
		member_free(&d->signals[i]);
	for (size_t i = 0; i < d->n_props; i++) {
		free(d->props[i].name);
		free(d->props[i].type);
		free(d->props[i].access);
	}
	free(d->methods);
	free(d->signals);
	free(d->props);
	free(d->introspect);
	free(d->name);
	free(d);
}

static char *xml_attr(xmlNode *node, const char *name)
{
	xmlChar *v = xmlGetProp(node, (const xmlChar *)name);
	if (!v)
		return NULL;
	char *s = strdup((const char *)v);
	xmlFree(v);
	return s;
}

static bool is_element(xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static bool parse_member(xmlNode *node, bool is_signal, struct bus_member *m, const char *iface,
			 char **err)
{
	memset(m, 0, sizeof(*m));
	m->name = xml_attr(node, "name");
	if (!m->name || !dbus_validate_member(m->name, NULL)) {
		/* no-i18n: bad embedded dbus-xml/ (a build defect), only logged */
		set_err(err, "%s: member without a valid name", iface);
		return false;
	}
	size_t sig_len = 0;
	for (xmlNode *c = node->children; c; c = c->next) {
		if (is_element(c, "annotation")) {
			char *an = xml_attr(c, "name");
			char *av = xml_attr(c, "value");
			if (an && av && strcmp(an, "org.freedesktop.DBus.Method.NoReply") == 0 &&
			    strcmp(av, "true") == 0)
				m->no_reply = true;
			free(an);
			free(av);
			continue;
		}
		if (!is_element(c, "arg"))
			continue;
		struct bus_arg *args = realloc(m->args, (m->n_args + 1) * sizeof(*args));
		if (!args)
			return false;
		m->args = args;
		struct bus_arg *a = &m->args[m->n_args++];
		a->name = xml_attr(c, "name");
		a->type = xml_attr(c, "type");
		char *dir = xml_attr(c, "direction");
		a->out = is_signal || (dir && strcmp(dir, "out") == 0);
		free(dir);
		if (!a->type || !dbus_signature_validate_single(a->type, NULL)) {
			/* no-i18n: bad embedded dbus-xml/ (a build defect), only logged */
			set_err(err, "%s.%s: invalid argument type \"%s\"", iface, m->name,
				a->type ? a->type : "");
			return false;
		}
		if (is_signal || !a->out)
			sig_len += strlen(a->type);
	}
	m->in_sig = calloc(sig_len + 1, 1);
	if (!m->in_sig)
		return false;
	for (size_t i = 0; i < m->n_args; i++)
		if (is_signal || !m->args[i].out)
			strcat(m->in_sig, m->args[i].type);
	return true;
}

/* Escapes the few characters that matter inside an attribute value. */
static void put_attr(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		default:
			fputc(*s, f);
		}
	}
}

static void put_args(FILE *f, const struct bus_member *m, bool is_signal)
{
	for (size_t i = 0; i < m->n_args; i++) {
		fputs("      <arg", f);
		if (m->args[i].name) {
			fputs(" name=\"", f);
			put_attr(f, m->args[i].name);
			fputc('"', f);
		}
		fputs(" type=\"", f);
		put_attr(f, m->args[i].type);
		fputc('"', f);
		if (!is_signal)
			fprintf(f, " direction=\"%s\"", m->args[i].out ? "out" : "in");
		fputs("/>\n", f);
	}
}

static bool iface_gen_introspect(struct bus_iface_def *d)
{
	size_t size = 0;
	FILE *f = open_memstream(&d->introspect, &size);
	if (!f)
		return false;
	fprintf(f, "  <interface name=\"%s\">\n", d->name);
	for (size_t i = 0; i < d->n_methods; i++) {
		fprintf(f, "    <method name=\"%s\">\n", d->methods[i].name);
		put_args(f, &d->methods[i], false);
		if (d->methods[i].no_reply)
			fputs("      <annotation name=\"org.freedesktop.DBus.Method.NoReply\""
			      " value=\"true\"/>\n",
			      f);
		fputs("    </method>\n", f);
	}
	for (size_t i = 0; i < d->n_signals; i++) {
		fprintf(f, "    <signal name=\"%s\">\n", d->signals[i].name);
		put_args(f, &d->signals[i], true);
		fputs("    </signal>\n", f);
	}
	for (size_t i = 0; i < d->n_props; i++) {
		fprintf(f, "    <property name=\"%s\" type=\"", d->props[i].name);
		put_attr(f, d->props[i].type);
		fprintf(f, "\" access=\"%s\"/>\n", d->props[i].access);
	}
	fputs("  </interface>\n", f);
	return fclose(f) == 0;
}

static struct bus_iface_def *parse_interface(xmlNode *node, char **err)
{
	struct bus_iface_def *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->name = xml_attr(node, "name");
	if (!d->name || !dbus_validate_interface(d->name, NULL)) {
		/* no-i18n: bad embedded dbus-xml/ (a build defect), only logged */
		set_err(err, "interface without a valid name");
		goto error;
	}
	for (xmlNode *c = node->children; c; c = c->next) {
		if (is_element(c, "method") || is_element(c, "signal")) {
			bool sig = is_element(c, "signal");
			struct bus_member **arr = sig ? &d->signals : &d->methods;
			size_t *n = sig ? &d->n_signals : &d->n_methods;
			struct bus_member *grown = realloc(*arr, (*n + 1) * sizeof(**arr));
			if (!grown)
				goto error;
			*arr = grown;
			bool ok = parse_member(c, sig, &grown[*n], d->name, err);
			(*n)++; /* counted even when half-parsed so it is freed */
			if (!ok)
				goto error;
		} else if (is_element(c, "property")) {
			struct bus_prop_def *grown =
			    realloc(d->props, (d->n_props + 1) * sizeof(*grown));
			if (!grown)
				goto error;
			d->props = grown;
			struct bus_prop_def *p = &d->props[d->n_props++];
			p->name = xml_attr(c, "name");
			p->type = xml_attr(c, "type");
			p->access = xml_attr(c, "access");
			if (!p->name || !p->type ||
			    !dbus_signature_validate_single(p->type, NULL)) {
				/* no-i18n: bad embedded dbus-xml/ (a build defect), only logged */
				set_err(err, "%s: property %s without a valid type", d->name,
					p->name ? p->name : "(unnamed)");
				goto error;
			}
			if (!p->access && !(p->access = strdup("read")))
				goto error;
		}
	}
	if (!iface_gen_introspect(d))
		goto error;
	return d;

error:
	bus_iface_def_free(d);
	return NULL;
}

const struct bus_iface_def *bus_find_def(const struct bus *bus, const char *name)
{
	for (size_t i = 0; i < bus->n_defs; i++)
		if (strcmp(bus->defs[i]->name, name) == 0)
			return bus->defs[i];
	return NULL;
}

const struct bus_member *bus_find_member(const struct bus_member *arr, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(arr[i].name, name) == 0)
			return &arr[i];
	return NULL;
}

const struct bus_prop_def *bus_find_prop_def(const struct bus_iface_def *d, const char *name)
{
	for (size_t i = 0; i < d->n_props; i++)
		if (strcmp(d->props[i].name, name) == 0)
			return &d->props[i];
	return NULL;
}

bool bus_load_xml(struct bus *bus, const char *xml, char **err)
{
	xmlDoc *doc = xmlReadMemory(xml, (int)strlen(xml), "dbus.xml", NULL,
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc) {
		/* no-i18n: bad embedded dbus-xml/ (a build defect), only logged */
		set_err(err, "not well-formed XML");
		return false;
	}
	bool ok = false;
	xmlNode *root = xmlDocGetRootElement(doc);
	if (!root || !is_element(root, "node")) {
		/* no-i18n: bad embedded dbus-xml/ (a build defect), only logged */
		set_err(err, "the root element is not <node>");
		goto out;
	}
	for (xmlNode *c = root->children; c; c = c->next) {
		if (!is_element(c, "interface"))
			continue;
		struct bus_iface_def *d = parse_interface(c, err);
		if (!d)
			goto out;
		if (bus_find_def(bus, d->name)) {
			/* no-i18n: bad embedded dbus-xml/ (a build defect), only logged */
			set_err(err, "interface %s defined twice", d->name);
			bus_iface_def_free(d);
			goto out;
		}
		struct bus_iface_def **grown =
		    realloc(bus->defs, (bus->n_defs + 1) * sizeof(*grown));
		if (!grown) {
			bus_iface_def_free(d);
			goto out;
		}
		bus->defs = grown;
		bus->defs[bus->n_defs++] = d;
	}
	ok = true;
out:
	xmlFreeDoc(doc);
	return ok;
}

const char *bus_method_signature(const struct bus *bus, const char *iface, const char *member)
{
	const struct bus_iface_def *d = bus_find_def(bus, iface);
	if (!d)
		return NULL;
	const struct bus_member *m = bus_find_member(d->methods, d->n_methods, member);
	return m ? m->in_sig : NULL;
}
